"""The ``l0`` plugin manager: registration, validation of registrations, inspection.

Split from :mod:`l0.plugins`, which re-exports :class:`L0PluginManager`, :class:`PluginInfo`
and :data:`BUILTINS` and builds managers (:func:`l0.plugins.build_plugin_manager`).
"""

from __future__ import annotations

import difflib
import inspect
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import pluggy

from l0 import hookspecs
from l0._plugin_hooks import _PROBE_ERROR, Hooks, _plugin_error
from l0.errors import ConfigError, L0PluginError
from l0.types import RetryPolicySpec

BUILTINS: Final = ("iter_adapter", "categorize", "retry", "backoff", "policies")
"""Builtin plugins, registered first. They are essential: blocking one is an error."""


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
