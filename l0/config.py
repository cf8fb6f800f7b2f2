"""Project configuration: ``[tool.l0]`` in pyproject.toml, ``l0.toml``, and ``L0_*`` variables.

Precedence, highest first: an argument of the call, an ``L0_*`` environment variable, the
config file, the default of the selected plugin policy. The file is the nearest ``l0.toml``
(whole file) or ``pyproject.toml`` with a ``[tool.l0]`` table, searching from the working
directory upward; in one directory ``l0.toml`` wins.

Keys (``section.key`` in TOML, ``L0_SECTION_KEY`` in the environment)::

    retry.policy           name of a registered retry policy ("fixed-jitter", "exponential", …)
    retry.attempts         int >= 0     retry.max_retries    int >= 0
    retry.base_delay       seconds >= 0 retry.max_delay      seconds >= 0
    retry.max_retry_after  seconds >= 0 retry.seed           int
    retry.strategy         a backoff strategy name
    retry.fallback_on      failure kinds that go to the fallback at once (list)
    timeout.initial_token  seconds > 0, or 0 for no limit
    timeout.total          seconds > 0 for the whole session, or 0 for no limit
    continuation.strategies  how wrapped clients ask to continue: prefill, user, restart
    timeout.inter_token    seconds > 0, or 0 for no limit
    plugins.disable        list of plugin names (env: comma-separated)
    plugins.load           allowlist of entry-point plugins (env: comma-separated)
    plugins.trace          bool: log every hook call
    guardrails.preset      name of a registered guardrail preset ("recommended", "strict", …)
    guardrails.rules       list of registered rule names, added to the preset
    guardrails.severity    table rule name -> "warning" | "error" | "fatal" (env: "rule=sev,…")
    drift.enabled          bool: detect drift
    drift.detectors        list of registered detector names (default: all)
    drift.window           int >= 16: tokens in the sliding window
    drift.threshold        number in [0, 1]: confidence needed to report drift
    otel.*, sentry.*       exporter settings, kept as written (env: ``L0_OTEL_<KEY>``); the
                           exporter plugin checks them and warns, so a bad one never stops a stream

A bad key or value raises :class:`~l0.errors.ConfigError` naming the source, the key, the value
and what is allowed.
"""

from __future__ import annotations

import functools
import math
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from l0.errors import ConfigError
from l0.retry import Retry
from l0.timeout import DEFAULT_INITIAL_TOKEN, DEFAULT_INTER_TOKEN, Timeout

if TYPE_CHECKING:
    from l0.plugins import L0PluginManager

__all__ = ["Settings", "load_config", "reset_config_cache", "resolve_retry", "resolve_timeout"]

DEFAULT_RETRY_POLICY: Final = "fixed-jitter"


def _int_ge0(value: object) -> int:
    if isinstance(value, str):
        value = value.strip()
        if value.lstrip("-").isdigit():
            value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("an integer >= 0")
    return value


def _int(value: object) -> int:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("an integer")
    return value


def _seconds_ge0(value: object) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValueError("a number of seconds >= 0") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("a number of seconds >= 0")
    if math.isnan(value) or math.isinf(value) or value < 0:
        raise ValueError("a number of seconds >= 0")
    return float(value)


def _timeout_seconds(value: object) -> float | None:
    seconds = _seconds_ge0(value)
    return None if seconds == 0 else seconds


def _name(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("a non-empty name")
    return value.strip()


def _names(value: object) -> list[str]:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [v.strip() for v in value if v.strip()]
    raise ValueError("a list of names (env: comma-separated)")


_SEVERITIES: Final = ("warning", "error", "fatal")


def _severity_map(value: object) -> dict[str, str]:
    expected = 'a table of rule name -> "warning" | "error" | "fatal"'
    if isinstance(value, str):
        pairs: dict[str, object] = {}
        for part in value.split(","):
            if not part.strip():
                continue
            rule, sep, sev = part.partition("=")
            if not sep or not rule.strip():
                raise ValueError(expected + ' (env form: "rule=severity,…")')
            pairs[rule.strip()] = sev.strip()
        value = pairs
    if not isinstance(value, Mapping):
        raise ValueError(expected)
    out = {}
    for rule, sev in value.items():
        if not isinstance(rule, str) or sev not in _SEVERITIES:
            raise ValueError(f"{expected}; {rule!r} = {sev!r} is not one of those")
        out[rule] = sev
    return out


def _unit_interval(value: object) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValueError("a number between 0 and 1") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError("a number between 0 and 1")
    return float(value)


MIN_DRIFT_WINDOW: Final = 16
"""Smallest drift window, in tokens: fewer cannot tell a loop from a repeated phrase."""


def _drift_window(value: object) -> int:
    try:
        parsed = _int_ge0(value)
    except ValueError:
        parsed = 0
    if parsed < MIN_DRIFT_WINDOW:
        raise ValueError(f"an integer >= {MIN_DRIFT_WINDOW}")
    return parsed


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("true or false")


CONTINUATION_STRATEGIES: Final = ("prefill", "user", "restart")
"""Continuation strategies a wrapped client knows (see docs/continuation.md)."""


def _strategies(value: object) -> list[str]:
    names = _names(value)
    unknown = [name for name in names if name not in CONTINUATION_STRATEGIES]
    if unknown or not names:
        raise ValueError(
            f"a list of continuation strategies ({', '.join(CONTINUATION_STRATEGIES)})"
        )
    return names


_SCHEMA: dict[str, dict[str, Callable[[object], object]]] = {
    "retry": {
        "policy": _name,
        "attempts": _int_ge0,
        "max_retries": _int_ge0,
        "base_delay": _seconds_ge0,
        "max_delay": _seconds_ge0,
        "max_retry_after": _seconds_ge0,
        "seed": _int,
        "strategy": _name,
        "fallback_on": _names,
    },
    "timeout": {
        "initial_token": _timeout_seconds,
        "inter_token": _timeout_seconds,
        "total": _timeout_seconds,
    },
    "plugins": {"disable": _names, "load": _names, "trace": _bool},
    "continuation": {"strategies": _strategies},
    "guardrails": {"preset": _name, "rules": _names, "severity": _severity_map},
    "drift": {
        "enabled": _bool,
        "detectors": _names,
        "window": _drift_window,
        "threshold": _unit_interval,
    },
}


PLUGIN_SECTIONS: Final = ("otel", "sentry")
"""Tables that belong to exporter plugins: read as written, checked by the plugin itself (#9),
because a bad exporter setting must cost a warning, never a stream."""


def _allowed_keys() -> str:
    return ", ".join(f"{s}.{k}" for s, keys in _SCHEMA.items() for k in keys)


@dataclass(frozen=True, slots=True)
class Settings:
    """Configuration in force (file and environment merged, environment winning).

    Attributes:
        values: Validated values by section and key.
        sources: Where each ``section.key`` came from (a file path or ``$L0_…``).
        file: The config file that was read, if any.
    """

    values: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)
    file: Path | None = None

    def get(self, section: str, key: str, default: Any = None) -> Any:
        """The value of ``section.key``, or ``default``."""
        return self.values.get(section, {}).get(key, default)

    @property
    def plugins_disable(self) -> list[str]:
        """Plugins config blocks."""
        return list(self.get("plugins", "disable", []))

    @property
    def plugins_load(self) -> list[str] | None:
        """Allowlist of entry-point plugins, or ``None`` for all."""
        value = self.get("plugins", "load")
        return None if value is None else list(value)


def _validate_table(
    table: Mapping[str, Any], source: str, into: dict[str, dict[str, Any]], sources: dict[str, str]
) -> None:
    for section, body in table.items():
        if section in PLUGIN_SECTIONS:
            if not isinstance(body, Mapping):
                raise ConfigError(
                    f"{source}: {section} = {body!r} must be a table of settings "
                    f"(see the l0-{section} plugin's documentation)",
                    key=section,
                )
            for key, value in body.items():
                into.setdefault(section, {})[key] = value
                sources[f"{section}.{key}"] = source
            continue
        if section not in _SCHEMA:
            raise ConfigError(
                f"{source}: unknown key {section!r}; allowed keys: {_allowed_keys()}",
                key=section,
            )
        if not isinstance(body, Mapping):
            raise ConfigError(
                f"{source}: {section} = {body!r} must be a table of keys "
                f"({', '.join(f'{section}.{k}' for k in _SCHEMA[section])})",
                key=section,
            )
        for key, value in body.items():
            _set(section, key, value, source, into, sources)


def _set(
    section: str,
    key: str,
    value: object,
    source: str,
    into: dict[str, dict[str, Any]],
    sources: dict[str, str],
) -> None:
    parsers = _SCHEMA[section]
    if key not in parsers:
        raise ConfigError(
            f"{source}: unknown key '{section}.{key}'; allowed keys in [{section}]: "
            f"{', '.join(f'{section}.{k}' for k in parsers)}",
            key=f"{section}.{key}",
        )
    try:
        parsed = parsers[key](value)
    except ValueError as exc:
        raise ConfigError(
            f"{source}: {section}.{key} = {value!r} is invalid; expected {exc}",
            key=f"{section}.{key}",
            value=value,
        ) from None
    into.setdefault(section, {})[key] = parsed
    sources[f"{section}.{key}"] = source


def _find_file(start: Path) -> tuple[Path, Mapping[str, Any]] | None:
    for directory in (start, *start.parents):
        candidate = directory / "l0.toml"
        if candidate.is_file():
            return candidate, _read_toml(candidate)
        pyproject = directory / "pyproject.toml"
        if pyproject.is_file():
            data = _read_toml(pyproject)
            tool = data.get("tool", {})
            if isinstance(tool, Mapping) and "l0" in tool:
                table = tool["l0"]
                if not isinstance(table, Mapping):
                    raise ConfigError(f"{pyproject}: [tool.l0] must be a table")
                return pyproject, table
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None


_ENV_PLUGIN_NAMES: Final = {
    "L0_DISABLE_PLUGINS": ("plugins", "disable"),
    "L0_LOAD_PLUGINS": ("plugins", "load"),
    "L0_TRACE_PLUGINS": ("plugins", "trace"),
}


def _env_key(name: str) -> tuple[str, str] | None:
    if name in _ENV_PLUGIN_NAMES:
        return _ENV_PLUGIN_NAMES[name]
    rest = name[3:].lower()
    for section in PLUGIN_SECTIONS:
        if rest.startswith(section + "_") and len(rest) > len(section) + 1:
            return section, rest[len(section) + 1 :]
    for section, keys in _SCHEMA.items():
        prefix = section + "_"
        if rest.startswith(prefix) and rest[len(prefix) :] in keys:
            return section, rest[len(prefix) :]
    return None


def _env_names() -> list[str]:
    names = list(_ENV_PLUGIN_NAMES)
    names += [f"L0_{s.upper()}_{k.upper()}" for s, keys in _SCHEMA.items() for k in keys]
    return sorted(set(names))


@functools.lru_cache(maxsize=32)
def _load(cwd: str, env: tuple[tuple[str, str], ...]) -> Settings:
    values: dict[str, dict[str, Any]] = {}
    sources: dict[str, str] = {}
    found = _find_file(Path(cwd))
    file = None
    if found is not None:
        file, table = found
        label = f"{file} [tool.l0]" if file.name == "pyproject.toml" else str(file)
        _validate_table(table, label, values, sources)
    for name, raw in env:
        target = _env_key(name)
        if target is None:
            raise ConfigError(
                f"${name}: unknown L0 environment variable; allowed: {', '.join(_env_names())}",
                key=name,
            )
        section, key = target
        if section in PLUGIN_SECTIONS:
            values.setdefault(section, {})[key] = raw
            sources[f"{section}.{key}"] = f"${name}"
            continue
        _set(section, key, raw, f"${name}", values, sources)
    return Settings(values=values, sources=sources, file=file)


def load_config(cwd: str | os.PathLike[str] | None = None) -> Settings:
    """Read and validate the configuration in force (cached per directory and environment).

    Raises:
        ConfigError: a key is unknown or a value invalid; the message names both.
    """
    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("L0_")))
    return _load(str(Path(cwd) if cwd is not None else Path.cwd()), env)


def reset_config_cache() -> None:
    """Forget cached configuration (after editing the file in a running process)."""
    _load.cache_clear()


_RETRY_NUMBERS: Final = (
    "attempts",
    "max_retries",
    "base_delay",
    "max_delay",
    "max_retry_after",
    "seed",
    "strategy",
    "fallback_on",
)


def resolve_retry(argument: Retry | None, settings: Settings, plugins: L0PluginManager) -> Retry:
    """The ``Retry`` in force: the argument, else the configured policy with configured numbers.

    Raises:
        ConfigError: the configured policy is not registered by any plugin.
    """
    if argument is not None:
        return argument
    name = settings.get("retry", "policy", DEFAULT_RETRY_POLICY)
    policies = plugins.retry_policies()
    if name not in policies:
        source = settings.sources.get("retry.policy", "default")
        raise ConfigError(
            f"{source}: retry.policy = {name!r}: no such policy; choose one of: "
            f"{plugins.describe_policies()}",
            key="retry.policy",
            value=name,
        )
    overrides = {
        k: settings.get("retry", k) for k in _RETRY_NUMBERS if settings.get("retry", k) is not None
    }
    spec = policies[name][0]
    try:
        policy = spec.factory(overrides)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"retry policy {name!r} rejected the configured values: {exc}") from exc
    if not isinstance(policy, Retry):
        raise ConfigError(
            f"retry policy {name!r} (from plugin {policies[name][1]!r}) returned "
            f"{type(policy).__name__}; expected l0.Retry"
        )
    return policy


def resolve_timeout(argument: Timeout | None, settings: Settings) -> Timeout:
    """The ``Timeout`` in force: the argument, else configured values, else the defaults."""
    if argument is not None:
        return argument
    values = settings.values.get("timeout", {})
    return Timeout(
        initial_token=values.get("initial_token", DEFAULT_INITIAL_TOKEN)
        if "initial_token" in values
        else DEFAULT_INITIAL_TOKEN,
        inter_token=values.get("inter_token", DEFAULT_INTER_TOKEN)
        if "inter_token" in values
        else DEFAULT_INTER_TOKEN,
        total=values.get("total"),
    )
