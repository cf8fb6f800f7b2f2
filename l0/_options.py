"""Validated ``l0.run`` arguments and the callback tables shared by the session modules."""

from __future__ import annotations

import contextlib
import inspect
import random
import types
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from l0.plugins import L0PluginManager
from l0.retry import Retry
from l0.timeout import Timeout
from l0.types import (
    Adapter,
)

DEFAULT_INTERVALS: dict[str, int] = {"guardrails": 10, "drift": 10, "checkpoint": 10}
"""Tokens between guardrail checks, drift checks and checkpoints unless ``check_intervals``
says otherwise. Checks look at the text added since the previous check, so their total cost
grows linearly with the output whatever the interval. The three are equal so that one stop
serves them all: the standard streaming rules batch by characters anyway (64 or 256), so a
rule check every 5 tokens found nothing sooner and cost 15% of a full-stack run on JSON."""
DEFAULT_MAX_OVERLAP = 200
"""Most characters held back at a continuation seam while deciding what the model repeated."""

CALLBACK_NAMES = (
    "on_start",
    "on_complete",
    "on_error",
    "on_event",
    "on_violation",
    "on_retry",
    "on_fallback",
    "on_resume",
    "on_checkpoint",
    "on_timeout",
    "on_abort",
    "on_drift",
    "on_tool_call",
)

_HOOK_ARGS: dict[str, tuple[str, ...]] = {
    "on_start": ("attempt", "is_retry", "is_fallback"),
    "on_complete": ("state",),
    "on_error": ("error", "will_retry", "will_fallback"),
    "on_violation": ("violation",),
    "on_retry": ("attempt", "reason"),
    "on_fallback": ("index", "reason"),
    "on_resume": ("checkpoint", "token_count"),
    "on_checkpoint": ("checkpoint", "token_count"),
    "on_timeout": ("timeout_type", "elapsed_ms"),
    "on_abort": ("token_count", "content_length"),
    "on_drift": ("types", "confidence"),
    "on_tool_call": ("tool_name", "tool_call_id", "args"),
}


_TAKES, _TAKES_NOT = (True,), (False,)
_TAKES_CTX: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def _takes_context(factory: Callable[..., Any]) -> bool:
    """True when ``factory`` has a required positional parameter (it wants the attempt context).

    ``functools.partial(sdk_call, model=...)`` and ``*args`` callables get no argument, so
    wrapping an SDK function keeps working.
    """
    # Plain functions and lambdas (a new object per l0.run call) are read from their code in
    # well under a microsecond; inspect.signature took ~20 µs per session.
    function = factory.__func__ if type(factory) is types.MethodType else factory
    # (inspect.signature follows __wrapped__ and __signature__: leave those to it.)
    if type(function) is types.FunctionType and not (
        function.__dict__
        and ("__wrapped__" in function.__dict__ or "__signature__" in function.__dict__)
    ):
        code = function.__code__
        bound = 1 if function is not factory else 0
        required = code.co_argcount - len(function.__defaults__ or ()) - bound
        return required > 0
    try:
        return _TAKES_CTX[factory]
    except (KeyError, TypeError):  # not seen yet, or not weakly referenceable
        pass
    takes = _inspect_takes_context(factory)
    with contextlib.suppress(TypeError):
        _TAKES_CTX[factory] = takes
    return takes


def _inspect_takes_context(factory: Callable[..., Any]) -> bool:
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return False
    for param in signature.parameters.values():
        if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            return param.default is param.empty
    return False


class _Options:
    """Validated arguments of one ``l0.run`` call."""

    __slots__ = (
        "_rng",
        "_seed",
        "adapter",
        "build_continuation_prompt",
        "callbacks",
        "context",
        "continuation",
        "continue_on_length",
        "drift",
        "factories",
        "guardrails",
        "health",
        "hedge_after",
        "intervals",
        "max_overlap",
        "meta",
        "plugins",
        "record",
        "remove_overlap",
        "retry",
        "retry_on_length",
        "session_id",
        "takes_ctx",
        "timeout",
    )

    def __init__(
        self,
        factories: tuple[Callable[..., Any], ...],
        retry: Retry,
        timeout: Timeout,
        adapter: Adapter | None,
        plugins: L0PluginManager,
        callbacks: Mapping[str, Callable[..., Any]],
        context: Mapping[str, Any],
        meta: Mapping[str, Any],
        session_id: str | None,
        seed: int | None,
        retry_on_length: bool,
        continue_on_length: int,
        hedge_after: float | None,
        guardrails: Any,
        drift: Any,
        intervals: Mapping[str, int] | None,
        continuation: bool,
        build_continuation_prompt: Callable[[str], str] | None,
        remove_overlap: bool,
        max_overlap: int,
        record: str | None,
        health: tuple[Any, Any, tuple[str | None, ...]] | None,
    ) -> None:
        # Positional, and ``callbacks`` taken as given (l0.run makes a new dict per call): made
        # once per l0.run, where 22 keyword arguments cost more than the rest (issue 11).
        self.factories = factories
        self.takes_ctx = (
            (_TAKES, _TAKES_NOT)[not _takes_context(factories[0])]
            if len(factories) == 1
            else tuple([_takes_context(f) for f in factories])
        )
        self.retry = retry
        self.timeout = timeout
        self.adapter = adapter
        self.plugins = plugins
        self.callbacks = callbacks
        self.context = context
        self.meta = meta
        self.session_id = session_id
        # The generator is made on the first jitter drawn: most sessions never retry.
        self._seed = seed if seed is not None else retry.seed
        self._rng: random.Random | None = None
        self.retry_on_length = retry_on_length
        self.continue_on_length = continue_on_length
        self.hedge_after = hedge_after
        self.guardrails = guardrails
        self.drift = drift
        # Read only: sessions without check_intervals share the defaults.
        self.intervals = {**DEFAULT_INTERVALS, **intervals} if intervals else DEFAULT_INTERVALS
        self.continuation = continuation
        self.build_continuation_prompt = build_continuation_prompt
        self.remove_overlap = remove_overlap
        self.max_overlap = max_overlap
        self.record = record
        self.health = health
        """(HealthService, Health, one key or None per stream), or None: no provider health."""

    @property
    def rng(self) -> random.Random:
        """The session's jitter generator, seeded with ``seed`` (else ``Retry.seed``)."""
        rng = self._rng
        if rng is None:
            rng = self._rng = random.Random(self._seed)
        return rng
