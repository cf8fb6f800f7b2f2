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
    retry.strategy         a backoff strategy (any case, ``_`` or ``-``), or a plugin's
    retry.fallback_on      failure kinds that go to the fallback at once (list)
    timeout.initial_token  seconds > 0, or 0 for no limit
    timeout.inter_token    seconds > 0, or 0 for no limit
    timeout.total          seconds > 0 for the whole session, or 0 for no limit
    continuation.strategies  how wrapped clients ask to continue: prefill, user, restart
    plugins.disable        list of plugin names (env: comma-separated)
    plugins.load           allowlist of entry-point plugins (env: comma-separated)
    plugins.trace          bool: log every hook call
    guardrails.preset      name of a registered guardrail preset ("recommended", "strict", …)
    guardrails.rules       list of registered rule names, added to the preset
    guardrails.severity    table rule name -> "warning" | "error" | "fatal" (env: "rule=sev,…")
    guardrails.options     table rule name -> table of the rule's factory options (env: JSON)
    drift.enabled          bool: detect drift
    drift.detectors        list of registered detector names (default: all)
    drift.window           int >= 16: tokens in the sliding window
    drift.threshold        number in [0, 1]: confidence needed to report drift
    health.*               provider health thresholds: see l0.Health (enabled, failure_threshold,
                           failure_window, open_seconds, retry_budget, retry_budget_min,
                           budget_window, contact_wait, store_timeout)
    redis.url              the Redis of l0-redis (env: L0_REDIS_URL); redis.prefix: key prefix
    otel.*, sentry.*       exporter settings, kept as written (env: ``L0_OTEL_<KEY>``); the
                           exporter plugin checks them and warns, so a bad one never stops a stream

A bad key or value raises :class:`~l0.errors.ConfigError` naming the source, the key, the value
and what is allowed, when ``l0.run`` is called and before any request. An unknown ``L0_*``
environment variable only warns (once), naming the closest known one.

Configuration is resolved once and cached; every read compares the ``L0_*`` environment, and
at most every :data:`RECHECK_SECONDS` the file's size and modification time (so an edit is seen
within that interval; :func:`explain` and :func:`check` always look); :func:`reload` drops the
cache at once.
:func:`explain` lists every value in effect with its source; :func:`check` lists every problem.

This module sits below :mod:`l0.plugins` in the import graph: it never imports it. Functions
that need a plugin manager take one, or ask the provider :mod:`l0.plugins` installs.
"""

from __future__ import annotations

import difflib
import os
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from l0._config_resolve import (
    DEFAULT_RETRY_POLICY,
    check_strategy,
    resolve_retry,
    resolve_timeout,
)
from l0._config_schema import (
    CONTINUATION_STRATEGIES,
    MIN_DRIFT_WINDOW,
    ConfigProblem,
    _Collector,
    _did_you_mean,
    _env_key,
    _env_names,
    _file_label,
    _find_file,
)
from l0.errors import ConfigError, ConfigWarning
from l0.retry import Retry
from l0.timeout import Timeout

if TYPE_CHECKING:
    from l0.plugins import L0PluginManager

__all__ = [
    "CONTINUATION_STRATEGIES",
    "MIN_DRIFT_WINDOW",
    "RECHECK_SECONDS",
    "ConfigProblem",
    "ConfigValue",
    "Settings",
    "check",
    "check_strategy",
    "explain",
    "load_config",
    "reload",
    "reset_config_cache",
    "resolve_retry",
    "resolve_timeout",
]


SourceKind = Literal["default", "pyproject", "l0.toml", "environment", "argument"]
"""Where a configuration value came from, as :func:`explain` reports it."""


@dataclass(frozen=True, slots=True)
class ConfigValue:
    """One configuration value in effect and where it came from (see :func:`explain`).

    Attributes:
        key: ``section.key``, e.g. ``"retry.strategy"``.
        value: The validated value in effect; ``None`` when unset and the engine decides.
        source: ``"default"``, ``"pyproject"``, ``"l0.toml"``, ``"environment"`` or
            ``"argument"``.
        location: The file, the ``$L0_…`` variable, the argument (``l0.run(retry=...)``) or
            what supplied the default (``retry policy 'fixed-jitter'``).
    """

    key: str
    value: Any
    source: SourceKind
    location: str


@dataclass(frozen=True, slots=True)
class Settings:
    """Configuration in force (file and environment merged, environment winning).

    Attributes:
        values: Validated values by section and key.
        sources: Where each ``section.key`` came from (a file path or ``$L0_…``).
        file: The config file that was read, if any.
        warnings: Problems that were ignored with a warning (unknown ``L0_*`` variables).
    """

    values: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)
    file: Path | None = None
    warnings: tuple[ConfigProblem, ...] = field(default=(), compare=False)
    # Policies resolved from these settings, per plugin manager and its version: each l0.run
    # would otherwise rebuild the same Retry (issue 11).
    _resolved: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

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


def _collect(cwd: str, env: tuple[tuple[str, str], ...]) -> tuple[Settings, Path | None]:
    """Read the file and the environment, keeping every problem instead of stopping."""
    found_in = Path(cwd)
    collector = _Collector()
    file = None
    try:
        found = _find_file(found_in)
    except ConfigError as exc:
        found = None
        file = exc.details.get("file")
        collector.problem(str(file or cwd), exc.message)
    if found is not None:
        file, table = found
        collector.table(table, _file_label(file))
    for name, raw in env:
        target = _env_key(name)
        if target is None:
            # A stray variable must not take a service down: ignore it, loudly (issue 8).
            known = _env_names()
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            hint = f"did you mean ${close[0]}?" if close else f"known: {', '.join(known)}"
            collector.problem(
                f"${name}",
                f"${name}: unknown L0 environment variable, ignored; {hint}",
                key=name,
                value=raw,
                severity="warning",
            )
            continue
        section, key = target
        collector.set(section, key, raw, f"${name}")
    warned = tuple(p for p in collector.problems if p.severity == "warning")
    settings = Settings(
        values=collector.values, sources=collector.sources, file=file, warnings=warned
    )
    errors = [p for p in collector.problems if p.severity == "error"]
    if errors:
        object.__setattr__(settings, "_resolved", {"errors": tuple(errors)})
    return settings, file


@dataclass(slots=True)
class _Entry:
    env: tuple[tuple[str, str], ...]
    stamp: tuple[int, ...]
    settings: Settings
    checked: float = 0.0
    # True once a read found no error and every warning already given: later reads within
    # RECHECK_SECONDS return the settings without looking at either.
    quiet: bool = False


RECHECK_SECONDS: float = 0.5
"""How long a cached configuration is trusted before the file system is looked at again.

Within this interval an edited or newly created config file is not seen (a changed ``L0_*``
environment always is); :func:`reload` forces a fresh read. ``0`` checks on every read.
"""


def _stamp(cwd: str, file: Path | None) -> tuple[int, ...]:
    """What must stay the same for a cached configuration to hold.

    The file's modification time, size and inode, and the modification time of every
    directory searched before it: creating a nearer ``l0.toml`` changes one of those.
    Plain ``os.path`` strings: this runs on every ``l0.run``.
    """
    stamp: list[int] = []
    last = os.path.dirname(file) if file is not None else None
    directory = cwd
    while True:
        try:
            stamp.append(os.stat(directory).st_mtime_ns)
        except OSError:
            stamp.append(-1)
        parent = os.path.dirname(directory)
        if directory in (last, parent):
            break
        directory = parent
    if file is not None:
        try:
            st = os.stat(file)
            stamp += (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            stamp.append(-1)
    return tuple(stamp)


_cache: dict[str, _Entry] = {}
_cache_lock = threading.Lock()
_warned: set[str] = set()


_env_memo: tuple[Any, ...] | None = None
"""(the raw environment dict, its names in order, the L0_ names, their raw values, the result)."""


def _env_snapshot() -> tuple[tuple[str, str], ...]:
    """The ``L0_*`` variables, sorted: exact, and cheap while the environment holds still.

    Runs on every ``l0.run``. The last scan is reused when ``os.environ`` has the same raw
    dict holding the same names in the same order (one list comparison, no decoding) and the
    same raw values under its ``L0_`` names; any added, removed or changed ``L0_`` variable is
    therefore seen. A change elsewhere (or a re-insertion) only costs a new scan.
    """
    global _env_memo  # noqa: PLW0603 - one memo for the process environment
    data = getattr(os.environ, "_data", None)
    if not isinstance(data, dict):
        return tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("L0_")))
    memo = _env_memo
    if memo is not None and memo[0] is data and list(data) == memo[1]:
        raws = memo[3]
        if not raws or [data.get(key) for key in memo[2]] == raws:
            snapshot: tuple[tuple[str, str], ...] = memo[4]
            return snapshot
    names = list(data)
    keys = [key for key in names if key[:3] in (b"L0_", "L0_")]
    raws = [data.get(key) for key in keys]
    # Decoded through os.environ, exactly as a full scan would.
    decoded = [os.fsdecode(key) if isinstance(key, bytes) else key for key in keys]
    snapshot = tuple(sorted((name, os.environ[name]) for name in decoded if name in os.environ))
    _env_memo = (data, names, keys, raws, snapshot)
    return snapshot


def _entry(cwd: str | os.PathLike[str] | None, *, always: bool = False) -> _Entry:
    key = os.fspath(cwd) if cwd is not None else os.getcwd()
    env = _env_snapshot()
    entry = _cache.get(key)
    # The stats of _stamp cost more than the rest of a cached read (issue 11), so the file
    # system is looked at most every RECHECK_SECONDS; the L0_* environment on every read.
    if entry is not None and entry.env == env:
        now = time.monotonic()
        if not always and now - entry.checked < RECHECK_SECONDS:
            return entry
        if _stamp(key, entry.settings.file) == entry.stamp:
            entry.checked = now
            return entry
    settings, file = _collect(key, env)
    entry = _Entry(env=env, stamp=_stamp(key, file), settings=settings, checked=time.monotonic())
    with _cache_lock:
        if len(_cache) > 64:
            _cache.clear()
        _cache[key] = entry
    return entry


def _errors_of(settings: Settings) -> tuple[ConfigProblem, ...]:
    errors: tuple[ConfigProblem, ...] = settings._resolved.get("errors", ())
    return errors


def load_config(cwd: str | os.PathLike[str] | None = None) -> Settings:
    """Read and validate the configuration in force (cached; see :func:`reload`).

    Unknown ``L0_*`` environment variables are ignored with a :class:`~l0.errors.ConfigWarning`
    (once per variable), naming the closest known variable.

    Raises:
        ConfigError: a key is unknown or a value invalid; the message names the source, the
            key, the value and what is allowed.
    """
    # The fast path of _load and _entry, for the common case (issue 11, session set-up): the
    # same directory and L0_* environment as a quiet read less than RECHECK_SECONDS ago.
    entry = _cache.get(os.getcwd() if cwd is None else os.fspath(cwd))
    if (
        entry is not None
        and entry.quiet
        and entry.env == _env_snapshot()
        and time.monotonic() - entry.checked < RECHECK_SECONDS
    ):
        return entry.settings
    return _load(cwd, always=False)


def _load(cwd: str | os.PathLike[str] | None, *, always: bool) -> Settings:
    entry = _entry(cwd, always=always)
    settings = entry.settings
    errors = _errors_of(settings)
    if errors:
        first = errors[0]
        raise ConfigError(first.message, key=first.key, value=first.value, source=first.location)
    for problem in settings.warnings:
        if problem.message not in _warned:
            _warned.add(problem.message)
            warnings.warn(problem.message, ConfigWarning, stacklevel=4)
    entry.quiet = True
    return settings


def reload(cwd: str | os.PathLike[str] | None = None) -> Settings:
    """Drop every cached configuration and read it again now.

    The cache already notices an edited or new config file and a changed ``L0_*``
    environment (by modification times, sizes and the environment), so this is only needed
    when an edit keeps the size and the file system's timestamp resolution hides it.

    Raises:
        ConfigError: as :func:`load_config`.
    """
    reset_config_cache()
    return load_config(cwd)


def reset_config_cache() -> None:
    """Forget cached configuration (and the warnings already given for it)."""
    with _cache_lock:
        _cache.clear()
        _warned.clear()


# --- explain and check --------------------------------------------------------------------------

_default_manager: Callable[[], L0PluginManager] | None = None


def _set_default_manager(provider: Callable[[], L0PluginManager]) -> None:
    """Called by :mod:`l0.plugins` on import: how to get the default plugin manager."""
    global _default_manager  # noqa: PLW0603 - set once, by the module above this one
    _default_manager = provider


def _manager(plugins: L0PluginManager | None) -> L0PluginManager:
    if plugins is not None:
        return plugins
    if _default_manager is None:  # pragma: no cover - l0/__init__ imports l0.plugins
        raise RuntimeError("l0.plugins is not imported; pass plugins=")
    return _default_manager()


def _source_kind(location: str) -> SourceKind:
    if location.startswith("$"):
        return "environment"
    if location.endswith("[tool.l0]"):
        return "pyproject"
    return "l0.toml"


_PLAIN_DEFAULTS: Final[Mapping[str, tuple[Any, str]]] = {
    "plugins.disable": ([], "nothing disabled"),
    "plugins.load": (None, "every installed plugin"),
    "plugins.trace": (False, "not traced"),
    "guardrails.preset": (None, "no guardrails"),
    "guardrails.rules": ([], "no extra rules"),
    "guardrails.severity": ({}, "each rule's own severity"),
    "drift.enabled": (False, "drift detection off"),
    "drift.detectors": (None, "every registered detector"),
    "drift.window": (None, "l0.DriftConfig default"),
    "drift.threshold": (None, "l0.DriftConfig default"),
}


def explain(
    cwd: str | os.PathLike[str] | None = None,
    *,
    retry: Retry | None = None,
    timeout: Timeout | None = None,
    plugins: L0PluginManager | None = None,
) -> list[ConfigValue]:
    """Every configuration key with the value in effect and its source.

    Args:
        cwd: Directory to search for the config file from (the working directory if omitted).
        retry: A ``retry=`` argument, as ``l0.run`` would get it (it replaces ``retry.*``).
        timeout: A ``timeout=`` argument, as ``l0.run`` would get it.
        plugins: Plugin manager offering the retry policies (the default one if omitted).

    Returns:
        One :class:`ConfigValue` per key, in the documented order.

    Raises:
        ConfigError: the configuration is invalid (:func:`check` lists every problem instead).
        TypeError: ``retry`` or ``timeout`` has the wrong type.
    """
    if retry is not None and not isinstance(retry, Retry):
        raise TypeError(f"retry={retry!r}: expected l0.Retry(...) or None")
    if timeout is not None and not isinstance(timeout, Timeout):
        raise TypeError(f"timeout={timeout!r}: expected l0.Timeout(...) or None")
    settings = _load(cwd, always=True)
    pm = _manager(plugins)
    out: list[ConfigValue] = []

    def configured(key: str, value: Any) -> None:
        location = settings.sources[key]
        out.append(ConfigValue(key, value, _source_kind(location), location))

    policy_name = settings.get("retry", "policy", DEFAULT_RETRY_POLICY)
    if retry is not None:
        for name in ("policy", *Retry.field_names()):
            value = None if name == "policy" else getattr(retry, name)
            out.append(ConfigValue(f"retry.{name}", value, "argument", "l0.run(retry=...)"))
    else:
        policy = resolve_retry(None, settings, pm)
        if "retry.policy" in settings.sources:
            configured("retry.policy", policy_name)
        else:
            out.append(ConfigValue("retry.policy", policy_name, "default", "l0 default"))
        for f in fields(Retry):
            key = f"retry.{f.name}"
            value = getattr(policy, f.name)
            if key in settings.sources:
                configured(key, value)
            else:
                origin = f"retry policy {policy_name!r}"
                out.append(ConfigValue(key, value, "default", origin))
    for name in ("initial_token", "inter_token"):
        key = f"timeout.{name}"
        if timeout is not None:
            value = getattr(timeout, name)
            out.append(ConfigValue(key, value, "argument", "l0.run(timeout=...)"))
        elif key in settings.sources:
            configured(key, settings.get("timeout", name))
        else:
            value = getattr(resolve_timeout(None, settings), name)
            out.append(ConfigValue(key, value, "default", "l0.Timeout default"))
    for key, (default, origin) in _PLAIN_DEFAULTS.items():
        section, name = key.split(".")
        if key in settings.sources:
            configured(key, settings.get(section, name))
        else:
            out.append(ConfigValue(key, default, "default", origin))
    return out


def check(
    cwd: str | os.PathLike[str] | None = None, *, plugins: L0PluginManager | None = None
) -> list[ConfigProblem]:
    """Every problem of the configuration in force, without stopping at the first.

    Checks what ``l0.run`` checks: each key and value of the file and the environment, the
    retry policy and strategy against the plugins, the guardrail preset, rules and
    severities, the drift detectors, and the names in ``plugins.disable``/``plugins.load``.

    Args:
        cwd: Directory to search for the config file from (the working directory if omitted).
        plugins: Plugin manager to check names against (the default one if omitted).

    Returns:
        The problems, errors first; an empty list means ``l0.run`` will accept the
        configuration.
    """
    settings = _entry(cwd, always=True).settings
    problems = list(_errors_of(settings)) + list(settings.warnings)
    if any(p.severity == "error" for p in problems):
        return problems
    try:
        pm = _manager(plugins)
    except Exception as exc:  # a plugin that fails to load is a problem of the configuration
        problems.append(ConfigProblem(None, None, "plugins", str(exc)))
        return problems

    def attempt(step: Callable[[], object]) -> None:
        try:
            step()
        except (ConfigError, TypeError, ValueError) as exc:
            details = getattr(exc, "details", {})
            problems.append(
                ConfigProblem(
                    details.get("key"),
                    details.get("value"),
                    str(details.get("source", "config")),
                    str(exc),
                )
            )

    attempt(lambda: resolve_retry(None, settings, pm))
    if "guardrails" in settings.values:
        from l0.guardrails import resolve_guardrails

        attempt(lambda: resolve_guardrails(None, pm, settings))
    if "drift" in settings.values:
        from l0.drift import resolve_drift

        attempt(lambda: resolve_drift(None, pm, settings))
    known = sorted(pm.available_plugin_names())
    for key in ("plugins.disable", "plugins.load"):
        section, name = key.split(".")
        for plugin in settings.get(section, name) or ():
            if plugin not in known:
                location = settings.sources[key]
                problems.append(
                    ConfigProblem(
                        key,
                        plugin,
                        location,
                        f"{location}: {key} names {plugin!r}, which is not an installed plugin"
                        f"{_did_you_mean(plugin, known)}; known: {', '.join(known)}",
                        "warning",
                    )
                )
    problems.sort(key=lambda p: p.severity != "error")
    return problems
