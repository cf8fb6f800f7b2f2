"""Reading configuration: value parsers, the schema, file discovery and the environment form.

Private to :mod:`l0.config`, which re-exports what is public. Everything here is pure: no cache,
no plugins.
"""

from __future__ import annotations

import difflib
import math
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from l0.errors import ConfigError
from l0.retry import normalize_strategy


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


def _strategy(value: object) -> str:
    # Builtin names in any spelling (FIXED_JITTER, fixed-jitter); other names may belong to a
    # backoff plugin and are checked against the plugins when l0.run resolves the policy.
    return normalize_strategy(_name(value))


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


def _rule_options(value: object) -> dict[str, dict[str, Any]]:
    expected = "a table of rule name -> table of options (env: a JSON object)"
    if isinstance(value, str):
        import json

        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError(expected) from None
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, Mapping) for k, v in value.items()
    ):
        raise ValueError(expected)
    return {k: dict(v) for k, v in value.items()}


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


def _int_ge1(value: object) -> int:
    try:
        parsed = _int_ge0(value)
    except ValueError:
        parsed = 0
    if parsed < 1:
        raise ValueError("an integer >= 1")
    return parsed


def _seconds_gt0(value: object) -> float:
    try:
        seconds = _seconds_ge0(value)
    except ValueError:
        seconds = 0.0
    if seconds <= 0:
        raise ValueError("a number of seconds > 0")
    return seconds


def _share(value: object) -> float:
    try:
        return _seconds_ge0(value)
    except ValueError:
        raise ValueError("a number >= 0 (0.2 = 20%)") from None


def _openai_transport(value: object) -> str:
    if value not in ("native", "sdk"):
        raise ValueError("'native' or 'sdk'")
    return str(value)


_SCHEMA: dict[str, dict[str, Callable[[object], object]]] = {
    "retry": {
        "policy": _name,
        "attempts": _int_ge0,
        "max_retries": _int_ge0,
        "base_delay": _seconds_ge0,
        "max_delay": _seconds_ge0,
        "max_retry_after": _seconds_ge0,
        "seed": _int,
        "strategy": _strategy,
        "fallback_on": _names,
    },
    "timeout": {
        "initial_token": _timeout_seconds,
        "inter_token": _timeout_seconds,
        "total": _timeout_seconds,
    },
    "plugins": {"disable": _names, "load": _names, "trace": _bool},
    "continuation": {"strategies": _strategies},
    "guardrails": {
        "preset": _name,
        "rules": _names,
        "severity": _severity_map,
        "options": _rule_options,
    },
    "drift": {
        "enabled": _bool,
        "detectors": _names,
        "window": _drift_window,
        "threshold": _unit_interval,
    },
    # Provider health (l0.health.Health has the same ranges) and its Redis store (l0-redis).
    "health": {
        "enabled": _bool,
        "failure_threshold": _int_ge1,
        "failure_window": _seconds_gt0,
        "open_seconds": _seconds_gt0,
        "retry_budget": _share,
        "retry_budget_min": _int_ge0,
        "budget_window": _seconds_gt0,
        "contact_wait": _seconds_ge0,
        "store_timeout": _seconds_gt0,
    },
    "redis": {"url": _name, "prefix": _name},
    # Read by the l0-openai adapter: L0's own SSE parser, or the SDK's chunk iterator.
    "openai": {"transport": _openai_transport},
}


PLUGIN_SECTIONS: Final = ("otel", "sentry")
"""Tables that belong to exporter plugins: read as written, checked by the plugin itself (#9),
because a bad exporter setting must cost a warning, never a stream."""


def _allowed_keys() -> str:
    return ", ".join(f"{s}.{k}" for s, keys in _SCHEMA.items() for k in keys)


def _did_you_mean(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One problem :func:`check` found.

    Attributes:
        key: ``section.key`` (or the environment variable) concerned, if any.
        value: The offending value, if any.
        location: The file or ``$L0_…`` variable it came from.
        message: The full message, as :class:`~l0.errors.ConfigError` would say it.
        severity: ``"error"`` (``l0.run`` refuses to start) or ``"warning"`` (ignored, with a
            warning).
    """

    key: str | None
    value: Any
    location: str
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        return self.message


class _Collector:
    """Validated values, their sources and every problem met on the way."""

    def __init__(self) -> None:
        self.values: dict[str, dict[str, Any]] = {}
        self.sources: dict[str, str] = {}
        self.problems: list[ConfigProblem] = []

    def problem(
        self,
        location: str,
        message: str,
        *,
        key: str | None = None,
        value: Any = None,
        severity: Literal["error", "warning"] = "error",
    ) -> None:
        self.problems.append(ConfigProblem(key, value, location, message, severity))

    def table(self, table: Mapping[str, Any], source: str) -> None:
        for section, body in table.items():
            if section in PLUGIN_SECTIONS:
                if not isinstance(body, Mapping):
                    self.problem(
                        source,
                        f"{source}: {section} = {body!r} must be a table of settings "
                        f"(see the l0-{section} plugin's documentation)",
                        key=section,
                        value=body,
                    )
                    continue
                for key, value in body.items():
                    self.plugin_value(section, key, value, source)
                continue
            if section not in _SCHEMA:
                hint = _did_you_mean(str(section), list(_SCHEMA))
                self.problem(
                    source,
                    f"{source}: unknown key {section!r}; allowed keys: {_allowed_keys()}{hint}",
                    key=str(section),
                )
                continue
            if not isinstance(body, Mapping):
                self.problem(
                    source,
                    f"{source}: {section} = {body!r} must be a table of keys "
                    f"({', '.join(f'{section}.{k}' for k in _SCHEMA[section])})",
                    key=section,
                    value=body,
                )
                continue
            for key, value in body.items():
                self.set(section, key, value, source)

    def plugin_value(self, section: str, key: str, value: object, source: str) -> None:
        """Keep an exporter plugin's setting as written; the plugin validates it."""
        self.values.setdefault(section, {})[key] = value
        self.sources[f"{section}.{key}"] = source

    def set(self, section: str, key: str, value: object, source: str) -> None:
        if section in PLUGIN_SECTIONS:
            self.plugin_value(section, key, value, source)
            return
        parsers = _SCHEMA[section]
        if key not in parsers:
            hint = _did_you_mean(f"{section}.{key}", [f"{section}.{k}" for k in parsers])
            self.problem(
                source,
                f"{source}: unknown key '{section}.{key}'; allowed keys in [{section}]: "
                f"{', '.join(f'{section}.{k}' for k in parsers)}{hint}",
                key=f"{section}.{key}",
            )
            return
        try:
            parsed = parsers[key](value)
        except ValueError as exc:
            self.problem(
                source,
                f"{source}: {section}.{key} = {value!r} is invalid; expected {exc}",
                key=f"{section}.{key}",
                value=value,
            )
            return
        self.values.setdefault(section, {})[key] = parsed
        self.sources[f"{section}.{key}"] = source


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
                    raise ConfigError(f"{pyproject}: [tool.l0] must be a table", file=pyproject)
                return pyproject, table
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}", file=path) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc}", file=path) from None


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


def _file_label(file: Path) -> str:
    return f"{file} [tool.l0]" if file.name == "pyproject.toml" else str(file)
