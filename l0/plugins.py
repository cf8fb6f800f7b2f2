"""The plugin manager: loads builtin plugins and everything under the ``l0`` entry-point group.

Builtins are ordinary plugins loaded through the same path as third-party ones, first, so that
pluggy (which calls the newest registration first) asks them last. No manager exists at import
time: :func:`default_plugin_manager` builds one lazily, and ``l0.run(..., plugins=pm)`` takes
any other.

Environment switches, read when a manager is built:

* ``L0_DISABLE_PLUGINS=a,b`` — block plugins by name.
* ``L0_LOAD_PLUGINS=a,b`` — allowlist of entry-point plugins; set but empty loads builtins only.
* ``L0_TRACE_PLUGINS=1`` — log every hook call (pluggy hook-call monitoring).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import logging
import math
import os
import random
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from types import ModuleType
from typing import Any, Final, TypeVar

import pluggy

from l0 import config as _config
from l0 import errors as _errors
from l0 import hookspecs
from l0.config import Settings, load_config
from l0.errors import ConfigError, ConfigWarning, L0Error, L0PluginError
from l0.types import Adapter, ErrorCategory, RetryDecision, RetryPolicySpec, State

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

hookimpl = pluggy.HookimplMarker("l0")

_BY_TYPE: Final = "l0_detects_by_type"

_F = TypeVar("_F", bound=Callable[..., Any])


def detects_by_type(function: _F) -> _F:
    """Mark an ``l0_detect_adapter`` implementation whose answer depends on ``type(stream)`` only.

    When every implementation is marked, L0 asks once per stream type and caches the answer
    (until a plugin is registered or unregistered) instead of calling the hook per session.
    """
    setattr(function, _BY_TYPE, True)
    return function


"""Marker for hook implementations: ``@l0.hookimpl def l0_on_retry(attempt, reason): ...``."""

BUILTINS: Final = ("iter_adapter", "categorize", "retry", "backoff", "policies")
"""Builtin plugins, registered first. They are essential: blocking one is an error."""

_REQUIRED_ANSWERS: Final = (
    "l0_detect_adapter",
    "l0_categorize_error",
    "l0_retry_decision",
    "l0_backoff_delay",
)


@dataclass(frozen=True, slots=True)
class PluginInfo:
    """One loaded plugin, as ``l0 plugins`` lists it.

    Attributes:
        name: Registration name (the entry-point name for installed plugins).
        origin: ``"builtin"``, ``"in-process"``, or the distribution that provides it.
        version: The distribution's version (the kernel's for builtins), if known.
        hooks: Names of the hooks it implements, sorted.
        builtin: True for the kernel's own plugins.
    """

    name: str
    origin: str
    version: str | None
    hooks: tuple[str, ...]
    builtin: bool


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


def _culprit(caller: pluggy.HookCaller, exc: BaseException) -> str | None:
    """The name of the plugin whose implementation of ``caller`` raised ``exc``, if known."""
    codes: dict[object, str] = {}
    for impl in caller.get_hookimpls():
        code = getattr(impl.function, "__code__", None)
        if code is not None:
            codes[code] = impl.plugin_name
    tb = exc.__traceback__
    while tb is not None:
        name = codes.get(tb.tb_frame.f_code)
        if name is not None:
            return name
        tb = tb.tb_next
    return None


def _plugin_error(
    caller: pluggy.HookCaller, exc: Exception, culprit: str | None = None
) -> L0PluginError:
    culprit = culprit or _culprit(caller, exc)
    who = f"plugin {culprit!r}" if culprit is not None else "a plugin"
    return L0PluginError(
        f"{who} raised in {caller.name}: {type(exc).__name__}: {exc}. Fix it, or disable it "
        f"with L0_DISABLE_PLUGINS={culprit or '<name>'}.",
        plugin=culprit,
        hook=caller.name,
    )


def _is_delay(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and not math.isnan(value)
        and value >= 0
    )


def _answering_plugin(caller: pluggy.HookCaller, kwargs: Mapping[str, Any]) -> str | None:
    """The plugin whose implementation answers a firstresult hook (asked again, in order).

    Only used to name the culprit of a bad answer, so the repeated calls do not matter.
    """
    for impl in reversed(caller.get_hookimpls()):
        if impl.hookwrapper or impl.wrapper:
            continue
        try:
            answer = impl.function(*(kwargs[name] for name in impl.argnames))
        except Exception:
            return impl.plugin_name
        if answer is not None:
            return impl.plugin_name
    return None


_PROBE_ERROR: Final = RuntimeError("l0: which plugin computes this backoff strategy?")


class Hooks:
    """Typed facade over ``pm.hook``: one method per decision and registration hook.

    An exception raised inside a plugin's decision or registration hook comes out as
    :class:`~l0.errors.L0PluginError` naming the plugin and the hook (``__cause__`` is the
    original), so a plugin bug is never mistaken for a provider failure and retried.
    ``l0_wrap_client`` is the exception: it runs for the caller of ``l0.wrap``, and its errors
    are messages to that caller.
    """

    def __init__(self, pm: L0PluginManager) -> None:
        self._hook = pm.hook
        self._pm = pm
        # type(stream) -> adapter, valid while every l0_detect_adapter implementation is
        # marked by_type and the manager's version (bumped by register/unregister) holds.
        self._by_type: dict[type, Adapter | None] = {}
        self._by_type_version = -1

    def _call(self, name: str, **kwargs: Any) -> Any:
        caller: pluggy.HookCaller = getattr(self._hook, name)
        try:
            return caller(**kwargs)
        except L0Error:
            # A deliberate, typed refusal (e.g. "this client is not supported") is meant for the
            # caller as is; only unexpected exceptions are a plugin bug.
            raise
        except Exception as exc:
            raise _plugin_error(caller, exc) from exc

    def detect_adapter(self, stream: Any) -> Adapter | None:
        """Ask ``l0_detect_adapter``, once per stream type when every answer depends on it only.

        Implementations marked with :func:`detects_by_type` answer from ``type(stream)``
        alone; when all of them are, the answer is cached per type (issue 11: no hook call per
        session) until a plugin is registered or unregistered.
        """
        version = self._pm.version
        if version != self._by_type_version:
            impls = self._hook.l0_detect_adapter.get_hookimpls()
            cacheable = all(getattr(i.function, _BY_TYPE, False) for i in impls)
            self._by_type = {}
            self._by_type_version = version if cacheable else -2
        if self._by_type_version >= 0:
            kind = type(stream)
            try:
                return self._by_type[kind]
            except KeyError:
                pass
            result: Adapter | None = self._call("l0_detect_adapter", stream=stream)
            if len(self._by_type) > 256:
                self._by_type.clear()
            self._by_type[kind] = result
            return result
        result = self._call("l0_detect_adapter", stream=stream)
        return result

    def categorize_error(self, error: BaseException) -> ErrorCategory | None:
        """Ask ``l0_categorize_error``."""
        result: ErrorCategory | None = self._call("l0_categorize_error", error=error)
        return result

    def retry_decision(
        self, error: BaseException, category: ErrorCategory, state: State
    ) -> RetryDecision | None:
        """Ask ``l0_retry_decision``."""
        result: RetryDecision | None = self._call(
            "l0_retry_decision", error=error, category=category, state=state
        )
        return result

    def backoff_delay(
        self, attempt: int, policy: Any, error: BaseException, rng: random.Random
    ) -> float | None:
        """Ask ``l0_backoff_delay``.

        Raises:
            L0PluginError: a plugin raised, or answered something other than a number of
                seconds >= 0 (the message names the plugin and the hook).
        """
        caller: pluggy.HookCaller = self._hook.l0_backoff_delay
        result: object = self._call(
            "l0_backoff_delay", attempt=attempt, policy=policy, error=error, rng=rng
        )
        if result is None:
            return None
        if isinstance(result, int | float) and _is_delay(result):
            return float(result)
        culprit = _answering_plugin(
            caller, {"attempt": attempt, "policy": policy, "error": error, "rng": random.Random(0)}
        )
        who = f"plugin {culprit!r}" if culprit is not None else "a plugin"
        raise L0PluginError(
            f"{who} returned {result!r} from l0_backoff_delay; expected a number of seconds "
            f">= 0, or None to let the next plugin answer. Fix it, or disable it with "
            f"L0_DISABLE_PLUGINS={culprit or '<name>'}.",
            plugin=culprit,
            hook="l0_backoff_delay",
            answer=result,
        )

    def wrap_client(self, client: Any, options: dict[str, Any]) -> Any | None:
        """Ask ``l0_wrap_client``.

        Exceptions pass through unchanged: raising ``TypeError``/``ValueError`` is how an
        adapter plugin tells the caller of ``l0.wrap`` what is wrong with their client.
        """
        return self._hook.l0_wrap_client(client=client, options=options)

    def open_health_store(self, settings: Any) -> Any | None:
        """Ask ``l0_open_health_store``; a ``ConfigError`` passes through as is."""
        return self._call("l0_open_health_store", settings=settings)

    def register_retry_policies(self) -> list[Iterable[RetryPolicySpec]]:
        """Collect ``l0_register_retry_policies``."""
        result: list[Iterable[RetryPolicySpec]] = self._call("l0_register_retry_policies")
        return result


class L0PluginManager(pluggy.PluginManager):
    """A pluggy manager for the ``l0`` project that records where each plugin came from."""

    def __init__(self) -> None:
        super().__init__("l0")
        self.add_hookspecs(hookspecs)
        self._origins: dict[str, tuple[str, str | None]] = {}
        self._lock = threading.Lock()
        self.version = 0
        """Bumped by every register/unregister; per-session hook tables rebuild when it moves."""
        self.hooks = Hooks(self)
        self._policies: dict[str, tuple[RetryPolicySpec, str]] | None = None
        self._strategies: dict[str, bool] = {}
        self._available: set[str] = set()

    # --- registration ----------------------------------------------------------------------------

    def parse_hookimpl_opts(self, plugin: object, name: str) -> Any:
        """Only names with the ``l0_`` prefix are hooks (pluggy parses every attribute)."""
        if not name.startswith("l0_"):
            return None
        return super().parse_hookimpl_opts(plugin, name)

    def register(self, plugin: object, name: str | None = None) -> str | None:
        """Register ``plugin`` (a module, class or instance with ``@l0.hookimpl`` functions).

        In-process plugins are checked exactly like installed ones.

        Raises:
            L0PluginError: a hook name no spec declares (a typo), an ``async def`` hook, or
                arguments that do not match the spec; the message names the plugin and hook.
        """
        with self._lock:
            try:
                registered = super().register(plugin, name)
            except pluggy.PluginValidationError as exc:
                label = name or self.get_canonical_name(plugin)
                origin = self._origins.get(label, ("in-process", None))[0]
                raise L0PluginError(
                    f"plugin {label!r} from {origin} is invalid: {exc}", plugin=label
                ) from exc
            if registered is None:
                return None
            if registered not in self._origins:
                self._origins[registered] = ("in-process", None)
            try:
                self._validate(plugin, registered)
            except L0PluginError:
                super().unregister(plugin)
                self._origins.pop(registered, None)
                raise
            self.version += 1
            self._policies = None
            self._strategies = {}
            return registered

    def _validate(self, plugin: object, name: str) -> None:
        origin = self._origins.get(name, ("in-process", None))[0]
        for caller in self.get_hookcallers(plugin) or ():
            if caller.spec is None:
                known = sorted(n for n in dir(hookspecs) if n.startswith("l0_"))
                close = difflib.get_close_matches(caller.name, known, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise L0PluginError(
                    f"plugin {name!r} from {origin}: unknown hook {caller.name!r}; {hint}"
                    f"Hooks are: {', '.join(known)}",
                    plugin=name,
                    hook=caller.name,
                )
            for impl in caller.get_hookimpls():
                if impl.plugin is not plugin:
                    continue
                function = impl.function
                if inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function):
                    raise L0PluginError(
                        f"plugin {name!r} from {origin}: {caller.name} is `async def`; L0 "
                        "hooks are plain `def` (an async decision hook returns a coroutine, "
                        "which counts as an answer). Do the async work in the object the hook "
                        "returns, or schedule it from a plain function.",
                        plugin=name,
                        hook=caller.name,
                    )

    def unregister(self, plugin: object | None = None, name: str | None = None) -> Any:
        """Remove a plugin by object or name."""
        with self._lock:
            removed = super().unregister(plugin, name)
            if name is not None:
                self._origins.pop(name, None)
            self.version += 1
            self._policies = None
            self._strategies = {}
            return removed

    def load_plugin(
        self,
        name: str,
        loader: Callable[[], object],
        *,
        origin: str,
        version: str | None = None,
    ) -> bool:
        """Import and register one plugin; the single path for builtins and entry points.

        Returns:
            False when the name is blocked, True when registered.

        Raises:
            L0PluginError: the import failed or the plugin's hooks do not match the specs. A
                missing guardrail is a safety bug, so failures are never skipped silently.
        """
        if self.is_blocked(name):
            if origin == "builtin":
                raise ConfigError(
                    f"plugin {name!r} is builtin and essential; it cannot be disabled "
                    f"(essential: {', '.join(BUILTINS)}). Override its hooks instead."
                )
            return False
        try:
            plugin = loader()
        except Exception as exc:
            raise L0PluginError(
                f"plugin {name!r} from {origin} failed to import: {type(exc).__name__}: {exc}. "
                f"Fix or uninstall it, or disable it with L0_DISABLE_PLUGINS={name}."
            ) from exc
        self._origins[name] = (origin, version)
        try:
            self.register(plugin, name=name)
        except L0PluginError:
            self._origins.pop(name, None)
            raise
        self._origins[name] = (origin, version)
        return True

    def disable(self, name: str) -> None:
        """Unregister the plugin called ``name`` and block it from loading again."""
        origin = self._origins.get(name, ("", None))[0]
        if origin == "builtin" or name in BUILTINS:
            raise ConfigError(
                f"plugin {name!r} is builtin and essential; it cannot be disabled "
                f"(essential: {', '.join(BUILTINS)}). Override its hooks instead."
            )
        if self.get_plugin(name) is not None:
            self.unregister(name=name)
        self.set_blocked(name)

    def check_pending(self) -> None:
        """Fail if a plugin implements a hook that no spec declares (usually a typo).

        Raises:
            L0PluginError: naming the plugin, where it came from and the unknown hook.
        """
        try:
            super().check_pending()
        except pluggy.PluginValidationError as exc:
            name = self.get_name(exc.plugin) or repr(exc.plugin)
            origin = self._origins.get(name, ("in-process", None))[0]
            raise L0PluginError(
                f"plugin {name!r} from {origin}: {exc}. Hooks are: "
                f"{', '.join(sorted(n for n in dir(hookspecs) if n.startswith('l0_')))}",
                plugin=name,
            ) from exc

    # --- inspection ------------------------------------------------------------------------------

    def available_plugin_names(self) -> set[str]:
        """Names config may refer to: registered plugins and every installed entry point."""
        return {name for name, _ in self.list_name_plugin()} | self._available

    def computes_strategy(self, policy: Any) -> bool:
        """Whether a builtin formula or a backoff plugin computes ``policy.strategy``.

        Cached per strategy name until plugins change.

        Raises:
            L0PluginError: a backoff plugin raised or answered something other than a number.
        """
        strategy = str(policy.strategy)
        known = self._strategies.get(strategy)
        if known is None:
            answer = self.hooks.backoff_delay(0, policy, _PROBE_ERROR, random.Random(0))
            known = answer is not None
            self._strategies[strategy] = known
        return known

    def list_plugins(self) -> list[PluginInfo]:
        """Every registered plugin with its origin, version and implemented hooks, by name."""
        infos = []
        for name, plugin in self.list_name_plugin():
            if plugin is None:
                continue
            origin, version = self._origins.get(name, ("in-process", None))
            hooks = tuple(
                sorted(
                    caller.name
                    for caller in self.get_hookcallers(plugin) or ()
                    if caller.name.startswith("l0_")
                )
            )
            infos.append(
                PluginInfo(
                    name=name,
                    origin=origin,
                    version=version,
                    hooks=hooks,
                    builtin=origin == "builtin",
                )
            )
        return sorted(infos, key=lambda info: (not info.builtin, info.name))

    def require_answers(self, *hook_names: str) -> None:
        """Fail if a decision hook has no implementation left (e.g. all were unregistered)."""
        for hook_name in hook_names:
            caller = getattr(self.hook, hook_name)
            if not caller.get_hookimpls():
                raise L0PluginError(f"no plugin implements {hook_name}; L0 cannot run without it")

    # --- named retry policies --------------------------------------------------------------------

    def retry_policies(self) -> Mapping[str, tuple[RetryPolicySpec, str]]:
        """Registered retry policies by name, with the plugin that offered each (cached)."""
        cached = self._policies
        if cached is not None:
            return cached
        found: dict[str, tuple[RetryPolicySpec, str]] = {}
        caller = self.hook.l0_register_retry_policies
        for impl in caller.get_hookimpls():
            try:
                produced: Any = impl.function()
                specs: list[Any] = list(produced or ())
            except Exception as exc:
                raise _plugin_error(caller, exc, impl.plugin_name) from exc
            for spec in specs:
                if not isinstance(spec, RetryPolicySpec):
                    raise L0PluginError(
                        f"plugin {impl.plugin_name!r}: l0_register_retry_policies yielded "
                        f"{spec!r}; expected RetryPolicySpec"
                    )
                if spec.name in found:
                    raise L0PluginError(
                        f"retry policy {spec.name!r} is offered by both "
                        f"{found[spec.name][1]!r} and {impl.plugin_name!r}; disable one"
                    )
                found[spec.name] = (spec, impl.plugin_name)
        self._policies = found
        return found

    def describe_policies(self) -> str:
        """``name (origin), …`` for error messages."""
        parts = []
        for name, (_, plugin_name) in sorted(self.retry_policies().items()):
            origin, version = self._origins.get(plugin_name, ("in-process", None))
            label = "builtin" if origin == "builtin" else f"{origin} {version or ''}".strip()
            parts.append(f"{name} ({label})")
        return ", ".join(parts)


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
