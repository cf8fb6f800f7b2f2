"""The hooks L0 calls.

Implement them with ``@l0.hookimpl`` in a module named by an ``l0`` entry point.

Hooks come in three shapes:

* ``l0_register_<plural>()`` — *collect*: called once per plugin manager; every plugin's
  records are gathered.
* ``l0_<verb>_<object>(…)`` — *decisions*, ``firstresult``: plugins are asked newest first and
  the first answer that is not ``None`` wins. The builtin answer is registered ``trylast``, so
  any plugin can override it.
* ``l0_on_<event>(…)`` and ``l0_export_event(event)`` — *broadcast*: every implementation is
  called.

Hooks are plain ``def`` functions. An ``async def`` implementation of a firstresult hook would
return a coroutine, which pluggy counts as an answer, so async work lives in the objects hooks
return (adapters, rules, exporter queues). No hook is called per token: per-token work is done
by the objects the registration hooks hand over.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

import pluggy

from l0.types import (
    Adapter,
    ErrorCategory,
    GuardrailViolation,
    RetryDecision,
    RetryPolicySpec,
    State,
)

hookspec = pluggy.HookspecMarker("l0")

# --- registration: called once per plugin manager ------------------------------------------------


@hookspec
def l0_register_retry_policies() -> Iterable[RetryPolicySpec]:
    """Offer retry policies that config may select by name.

    Called: once per plugin manager, the first time a policy is looked up.
    Returns: any number of :class:`~l0.types.RetryPolicySpec`; a name offered twice fails with
    ``L0PluginError`` naming both plugins.

    Example:
        .. code-block:: python

            @l0.hookimpl
            def l0_register_retry_policies():
                yield RetryPolicySpec("patient", lambda cfg: l0.Retry(**{"base_delay": 5.0, **cfg}))
    """


@hookspec
def l0_register_guardrails() -> Iterable[Any]:
    """Offer named guardrail rules and presets (``l0.Guardrails.*`` and config resolve them).

    Called: once per plugin manager, the first time a rule or preset is looked up.
    Returns: any number of :class:`l0.guardrails.RuleSpec` and :class:`l0.guardrails.PresetSpec`
    records; a name offered twice fails at lookup time.

    Example::

        @l0.hookimpl
        def l0_register_guardrails():
            yield RuleSpec("no_shouting", lambda **options: GuardrailRule("no_shouting", ...))
            yield PresetSpec("polite", rules=("no_shouting", "pattern"))
    """


@hookspec
def l0_register_drift_detectors() -> Iterable[Any]:
    """Offer named drift detectors that ``drift=`` and config select.

    Called: once per plugin manager, the first time drift detection is configured.
    Returns: any number of :class:`l0.drift.DetectorSpec` records.

    Example::

        @l0.hookimpl
        def l0_register_drift_detectors():
            yield DetectorSpec("shouting", lambda options: ShoutingDetector(**options))
    """


# --- decisions: firstresult; the builtin answer is registered trylast ---------------------------


@hookspec(firstresult=True)
def l0_detect_adapter(stream: Any) -> Adapter | None:
    """Pick the adapter that turns ``stream`` into L0 events.

    Called: once per attempt, after the stream factory returned, unless ``adapter=`` was passed
    or an adapter registered with ``l0.Adapters.register`` claimed the stream.
    Returns: an :class:`~l0.types.Adapter`, or ``None`` when this plugin does not know the
    stream. The builtin ``iter_adapter`` answers for any async iterator of ``str``/``Event``.
    """


@hookspec(firstresult=True)
def l0_categorize_error(error: BaseException) -> ErrorCategory | None:
    """Say what kind of failure ``error`` is.

    Called: once per failed attempt, before ``l0_retry_decision``; also by
    ``l0.errors.categorize_error``. An implementation that raises is logged and skipped.
    Returns: an :class:`~l0.types.ErrorCategory`, or ``None`` to defer; the builtin
    ``categorize`` plugin always answers (status, then exception type, then message).
    """


@hookspec(firstresult=True)
def l0_retry_decision(
    error: BaseException, category: ErrorCategory, state: State
) -> RetryDecision | None:
    """Decide whether the failed attempt runs again.

    Called: once per failed attempt, after ``l0_categorize_error`` and before
    ``l0_backoff_delay``; never per token. ``state`` is a snapshot.
    Returns: a :class:`~l0.types.RetryDecision`, or ``None`` to defer. The budgets of the
    session's ``Retry`` (``attempts``, ``max_retries``) still apply to a ``retry=True`` answer.
    """


@hookspec(firstresult=True)
def l0_backoff_delay(
    attempt: int, policy: Any, error: BaseException, rng: random.Random
) -> float | None:
    """Compute the delay in seconds before retry number ``attempt`` (0-based, per stream).

    Called: once per retry, after ``l0_retry_decision`` said yes. ``policy`` is the session's
    ``l0.Retry``; ``rng`` is the session's seedable random generator (use it for jitter so
    seeded runs repeat). A ``Retry-After`` sent by the server is applied by the kernel on top.
    Returns: seconds (capped by ``policy.max_delay``), or ``None`` to defer; the builtin
    ``backoff`` plugin implements the five :class:`~l0.types.BackoffStrategy` formulas.
    """


@hookspec(firstresult=True)
def l0_wrap_client(client: Any, options: dict[str, Any]) -> Any | None:
    """Wrap an SDK client object so that its streaming calls return L0 results.

    Called: by ``l0.wrap(obj, **options)`` when ``obj`` is not a stream.
    Returns: the wrapped client, or ``None`` when this plugin does not know ``client``.
    """


@hookspec(firstresult=True)
def l0_open_health_store(settings: Any) -> Any | None:
    """Provide the store that holds provider health (circuits, ``Retry-After``, retry budgets).

    Called: once per plugin manager, when the first session with a provider key starts (again
    after a plugin is registered). ``settings`` is the :class:`l0.config.Settings` in force;
    a shared store reads its own section (``l0-redis``: ``[tool.l0.redis]``).
    Returns: an object implementing :class:`l0.health.HealthStore` (its methods are
    ``async``; the hook itself is plain ``def`` and must not block), or ``None`` to defer;
    with no answer L0 keeps health in this process. Raise ``ConfigError`` for bad settings.

    Example:
        .. code-block:: python

            @l0.hookimpl
            def l0_open_health_store(settings):
                url = settings.get("redis", "url")
                return MyStore(url) if url else None
    """


# --- guardrails and drift: called per check interval, never per token ---------------------------


@hookspec
def l0_guardrail_check(context: Any) -> list[GuardrailViolation] | None:
    """Check the output so far, from a plugin rather than a rule object.

    Called: at each guardrail check interval and once when the stream completes, only when at
    least one plugin implements it.
    Returns: a list of violations (empty or ``None`` when all is well); results of every plugin
    are concatenated.
    """


# --- lifecycle: broadcast, mirror the on_* callbacks, receive copies ----------------------------


@hookspec
def l0_on_start(attempt: int, is_retry: bool, is_fallback: bool) -> None:
    """An attempt begins. Called: before the stream factory runs. Returns: nothing."""


@hookspec
def l0_on_complete(state: State) -> None:
    """The session finished successfully. Called: once, after the last token. Returns: nothing."""


@hookspec
def l0_on_error(error: BaseException, will_retry: bool, will_fallback: bool) -> None:
    """An attempt failed. Called: after the retry decision, before any backoff. Returns: nothing."""


@hookspec
def l0_on_violation(violation: GuardrailViolation) -> None:
    """A guardrail found a problem. Called: once per violation. Returns: nothing."""


@hookspec
def l0_on_retry(attempt: int, reason: str) -> None:
    """The same stream runs again. Called: before the backoff delay. Returns: nothing."""


@hookspec
def l0_on_fallback(index: int, reason: str) -> None:
    """The session moves to ``fallbacks[index - 1]``. Called: before it starts. Returns: nothing."""


@hookspec
def l0_on_resume(checkpoint: str, token_count: int) -> None:
    """The next attempt continues from a checkpoint. Called: before it starts. Returns: nothing."""


@hookspec
def l0_on_checkpoint(checkpoint: str, token_count: int) -> None:
    """A checkpoint was saved. Called: at each checkpoint interval. Returns: nothing."""


@hookspec
def l0_on_timeout(timeout_type: str, elapsed_ms: int) -> None:
    """``initial`` or ``inter`` token timeout fired. Called: when it fires. Returns: nothing."""


@hookspec
def l0_on_abort(token_count: int, content_length: int) -> None:
    """The session was aborted or cancelled. Called: once. Returns: nothing."""


@hookspec
def l0_on_drift(types: list[str], confidence: float | None) -> None:
    """Drift was detected. Called: once per detection. Returns: nothing."""


@hookspec
def l0_on_tool_call(tool_name: str, tool_call_id: str, args: dict[str, Any]) -> None:
    """A complete tool call arrived.

    Called: once per call, with its whole arguments. Returns: nothing.
    """


# --- export ------------------------------------------------------------------------------------


@hookspec
def l0_export_event(event: Any) -> None:
    """Receive every observability event (exporters, recorders).

    Called: synchronously, in order, for each observability event of every session that uses
    this plugin manager; never for stream tokens. Implementations must not block: queue the
    event and do I/O elsewhere. An implementation that raises is logged and the stream goes on.
    An implementation may carry ``l0_event_types`` (a set of type names, e.g.
    ``{"SESSION_START", "SESSION_END"}``): it then receives only those, and when every
    exporter says so L0 builds no other events (guardrail events, one per rule and check, are
    the costly ones). Without it, an implementation receives every event. It may also carry
    ``l0_active``, a function without arguments each session calls once: while it answers
    false the implementation receives nothing from that session (an exporter whose backend
    is not set up), and a session nobody observes builds no events at all.
    Returns: nothing.
    """
