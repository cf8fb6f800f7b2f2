"""The plugin manager: loads builtin plugins and everything under the ``l0`` entry-point group.

Builtins are ordinary plugins loaded through the same path as third-party ones, first, so that
pluggy (which calls the newest registration first) asks them last. No manager exists at import
time: :func:`default_plugin_manager` builds one lazily, and ``l0.run(..., plugins=pm)`` takes
any other.

Environment switches, read when a manager is built:

* ``L0_DISABLE_PLUGINS=a,b`` — block plugins by name.
* ``L0_LOAD_PLUGINS=a,b`` — allowlist of entry-point plugins; set but empty loads builtins only.
* ``L0_TRACE_PLUGINS=1`` — log every hook call (pluggy hook-call monitoring).

The manager class lives in :mod:`l0._plugin_manager` and the typed hook facade in
:mod:`l0._plugin_hooks`; this module re-exports them and builds managers. Import from here.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import os
import threading
import warnings
from collections.abc import Callable, Iterable
from importlib import metadata
from types import ModuleType
from typing import Final

import pluggy

from l0 import config as _config
from l0 import errors as _errors
from l0._plugin_hooks import Hooks, detects_by_type
from l0._plugin_manager import BUILTINS, L0PluginManager, PluginInfo
from l0.config import Settings, load_config
from l0.errors import ConfigError, ConfigWarning

__all__ = [
    "BUILTINS",
    "Hooks",
    "L0PluginManager",
    "PluginInfo",
    "build_plugin_manager",
    "default_plugin_manager",
    "detects_by_type",
    "hookimpl",
    "reset_default_plugin_manager",
]

log = logging.getLogger("l0.plugins")

# Reprs and pickles name the public module, as before the manager and facade were split off.
for _moved in (Hooks, L0PluginManager, PluginInfo, detects_by_type):
    _moved.__module__ = __name__

hookimpl = pluggy.HookimplMarker("l0")
"""Marker for hook implementations: ``@l0.hookimpl def l0_on_retry(attempt, reason): ...``."""

_REQUIRED_ANSWERS: Final = (
    "l0_detect_adapter",
    "l0_categorize_error",
    "l0_retry_decision",
    "l0_backoff_delay",
)


def _kernel_version() -> str | None:
    try:
        return metadata.version("l0")
    except metadata.PackageNotFoundError:
        return None


def _csv_env(name: str) -> list[str] | None:
    raw = os.environ.get(name)
    if raw is None:
        return None
    return [part.strip() for part in raw.split(",") if part.strip()]


def _builtin_loader(name: str) -> Callable[[], ModuleType]:
    return lambda: importlib.import_module(f"l0.builtin.{name}")


def build_plugin_manager(
    *,
    entry_points: bool = True,
    blocked: Iterable[str] = (),
    allow: Iterable[str] | None = None,
    trace: bool | None = None,
) -> L0PluginManager:
    """Build a plugin manager: builtins first, then entry points sorted by name.

    Args:
        entry_points: Load plugins installed under the ``l0`` entry-point group.
        blocked: Plugin names not to load (adds to ``L0_DISABLE_PLUGINS``).
        allow: If given, only these entry-point plugins load (``L0_LOAD_PLUGINS`` otherwise).
        trace: Log every hook call (``L0_TRACE_PLUGINS`` otherwise).

    Raises:
        L0PluginError: a plugin failed to import or implements a hook wrongly.
        ConfigError: an essential builtin was blocked.
    """
    pm = L0PluginManager()
    blocked_names = set(blocked) | set(_csv_env("L0_DISABLE_PLUGINS") or ())
    for name in sorted(blocked_names):
        if name in BUILTINS:
            raise ConfigError(
                f"plugins.disable contains {name!r}, a builtin essential plugin; it cannot be "
                f"disabled (essential: {', '.join(BUILTINS)})"
            )
        pm.set_blocked(name)
    kernel_version = _kernel_version()
    for name in BUILTINS:
        pm.load_plugin(name, _builtin_loader(name), origin="builtin", version=kernel_version)
    allowed = set(allow) if allow is not None else None
    if allowed is None:
        env_allow = _csv_env("L0_LOAD_PLUGINS")
        allowed = set(env_allow) if env_allow is not None else None
    seen: set[str] = set(BUILTINS)
    if entry_points:
        for ep in sorted(metadata.entry_points(group="l0"), key=lambda ep: ep.name):
            if ep.name in seen:
                continue  # the same distribution visible twice on sys.path
            seen.add(ep.name)
            if allowed is not None and ep.name not in allowed:
                continue
            dist = ep.dist
            pm.load_plugin(
                ep.name,
                ep.load,
                origin=dist.name if dist is not None else "unknown",
                version=dist.version if dist is not None else None,
            )
    pm._available = seen
    if entry_points:
        _warn_unknown_names("plugins.disable", blocked_names, seen)
        _warn_unknown_names("plugins.load", allowed or (), seen)
    pm.check_pending()
    pm.require_answers(*_REQUIRED_ANSWERS)
    if trace if trace is not None else os.environ.get("L0_TRACE_PLUGINS", "") not in ("", "0"):
        pm.trace.root.setwriter(lambda message: log.debug("%s", message.rstrip()))
        pm.enable_tracing()
    return pm


_warned_names: set[tuple[str, str]] = set()


def _warn_unknown_names(key: str, names: Iterable[str], known: set[str]) -> None:
    """Warn once per name that matches no installed plugin (it is ignored, not fatal)."""
    for name in sorted(set(names) - known):
        if (key, name) in _warned_names:
            continue
        _warned_names.add((key, name))
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(sorted(known))}"
        warnings.warn(
            f"{key} names {name!r}, which is not an installed plugin; {hint}",
            ConfigWarning,
            stacklevel=4,
        )


_default_lock = threading.Lock()
_default: L0PluginManager | None = None
_default_key: tuple[object, ...] | None = None
_default_for: Settings | None = None


def _settings_key(settings: Settings) -> tuple[object, ...]:
    load = settings.plugins_load
    return (
        tuple(settings.plugins_disable),
        None if load is None else tuple(load),
        settings.get("plugins", "trace"),
    )


def default_plugin_manager() -> L0PluginManager:
    """The process-wide manager ``l0.run`` uses, built on first use (config may block plugins).

    It is rebuilt when the configured ``plugins.*`` values change.
    """
    return default_plugin_manager_for(load_config())


def default_plugin_manager_for(settings: Settings) -> L0PluginManager:
    """The default manager for ``settings`` (rebuilt when its ``plugins.*`` values changed)."""
    global _default, _default_key, _default_for  # noqa: PLW0603 - a lazy singleton is the point
    pm = _default
    if pm is not None and _default_for is settings:
        # The same settings object (the configuration cache hands it back): the same key.
        return pm
    key = _settings_key(settings)
    if pm is not None and _default_key == key:
        _default_for = settings
        return pm
    with _default_lock:
        if _default is None or _default_key != key:
            _default = build_plugin_manager(
                blocked=settings.plugins_disable,
                allow=settings.plugins_load,
                trace=settings.get("plugins", "trace"),
            )
            _default_key = key
        _default_for = settings
        return _default


def reset_default_plugin_manager() -> None:
    """Forget the default manager (tests, or after installing a plugin at run time)."""
    global _default, _default_key, _default_for  # noqa: PLW0603
    with _default_lock:
        _default = None
        _default_key = None
        _default_for = None


# errors and config sit below this module and never import it; they ask for the default
# manager through these providers (issue 8: no config/errors/plugins import cycle).
_errors._set_default_manager(default_plugin_manager)
_config._set_default_manager(default_plugin_manager)
