"""The typed facade over ``pm.hook`` and the helpers that name a misbehaving plugin.

Split from :mod:`l0.plugins`, which re-exports :class:`Hooks` and :func:`detects_by_type`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeVar

import pluggy

from l0.errors import L0Error, L0PluginError
from l0.types import Adapter, ErrorCategory, RetryDecision, RetryPolicySpec, State

if TYPE_CHECKING:
    from l0._plugin_manager import L0PluginManager

_BY_TYPE: Final = "l0_detects_by_type"

_F = TypeVar("_F", bound=Callable[..., Any])


def detects_by_type(function: _F) -> _F:
    """Mark an ``l0_detect_adapter`` implementation whose answer depends on ``type(stream)`` only.

    When every implementation is marked, L0 asks once per stream type and caches the answer
    (until a plugin is registered or unregistered) instead of calling the hook per session.
    """
    setattr(function, _BY_TYPE, True)
    return function


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
