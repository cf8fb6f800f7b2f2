"""Observability events: what L0 reports about each session, for ``on_event`` and exporters.

These are distinct from the stream events a consumer iterates (:class:`l0.types.Event`): they
describe the session (attempts, retries, timeouts, fallbacks …), never carry every token, and are
delivered to the ``on_event`` callback and to every ``l0_export_event`` plugin.

Every event has ``type``, ``ts`` (wall-clock milliseconds since the epoch), ``stream_id`` (a
time-ordered UUIDv7, one per session), ``session_id`` (the caller's, or the stream id), ``context``
and ``meta`` (the caller's, copied), and its own fields in ``data``, with snake_case names.
"""

from __future__ import annotations

import copy
import os
import threading
import time
import uuid
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

__all__ = [
    "REQUEST_META_KEY",
    "ObservabilityEvent",
    "ObservabilityEventType",
    "current_parent",
    "uuid7",
    "wants_content",
    "without_request_messages",
]

REQUEST_META_KEY = "l0.request"
"""``meta`` key under which a client wrapper describes the request for exporters: a mapping
with ``provider`` (``"openai"``), ``operation`` (``"chat"``) and ``models`` (the model of each
stream, by fallback index), and ``messages`` (the request's input messages). L0 drops
``messages`` before any event is built unless an exporter asks for content
(``l0_wants_content``, see ``docs/events.md``)."""


def wants_content(plugins: Any = None) -> bool:
    """Whether an exporter of ``plugins`` (default: the default manager) asks for content.

    Client wrappers call it once per request before putting ``messages`` in the request meta,
    so nothing is copied when no exporter records prompt or completion text.
    """
    from l0._dispatch import hook_table
    from l0.plugins import default_plugin_manager

    table = hook_table(plugins if plugins is not None else default_plugin_manager())
    if not table.content:
        return False
    view = table.session_view()  # an idle exporter (``l0_active``) asks for nothing
    return bool(view.content) and view.wants_content()


def without_request_messages(meta: Mapping[str, Any]) -> Mapping[str, Any]:
    """``meta`` without the request's input messages (the same object when there are none)."""
    request = meta.get(REQUEST_META_KEY)
    if not isinstance(request, Mapping) or "messages" not in request:
        return meta
    kept = {k: v for k, v in request.items() if k != "messages"}
    return MappingProxyType({**meta, REQUEST_META_KEY: MappingProxyType(kept)})


current_parent: ContextVar[str | None] = ContextVar("l0_current_parent", default=None)
"""The stream id that sessions created in this context report as their ``parent_id``.

Orchestration (race, parallel, consensus, pools) sets it around creating its child sessions, so
every child's events name the group, and exporters can draw the fan-out as one tree. A session
created while another L0 session's stream is being consumed inherits nothing automatically.
"""


class ObservabilityEventType(StrEnum):
    """Every observability event type L0 emits."""

    SESSION_START = "SESSION_START"
    SESSION_SUMMARY = "SESSION_SUMMARY"
    SESSION_END = "SESSION_END"
    STREAM_INIT = "STREAM_INIT"
    STREAM_READY = "STREAM_READY"
    ADAPTER_WRAP_START = "ADAPTER_WRAP_START"
    ADAPTER_DETECTED = "ADAPTER_DETECTED"
    ADAPTER_WRAP_END = "ADAPTER_WRAP_END"
    TIMEOUT_START = "TIMEOUT_START"
    TIMEOUT_RESET = "TIMEOUT_RESET"
    TIMEOUT_TRIGGERED = "TIMEOUT_TRIGGERED"
    RETRY_START = "RETRY_START"
    RETRY_ATTEMPT = "RETRY_ATTEMPT"
    RETRY_END = "RETRY_END"
    RETRY_GIVE_UP = "RETRY_GIVE_UP"
    FALLBACK_START = "FALLBACK_START"
    FALLBACK_MODEL_SELECTED = "FALLBACK_MODEL_SELECTED"
    FALLBACK_END = "FALLBACK_END"
    GUARDRAIL_PHASE_START = "GUARDRAIL_PHASE_START"
    GUARDRAIL_PHASE_END = "GUARDRAIL_PHASE_END"
    GUARDRAIL_RULE_START = "GUARDRAIL_RULE_START"
    GUARDRAIL_RULE_RESULT = "GUARDRAIL_RULE_RESULT"
    GUARDRAIL_RULE_END = "GUARDRAIL_RULE_END"
    GUARDRAIL_CALLBACK_START = "GUARDRAIL_CALLBACK_START"
    GUARDRAIL_CALLBACK_END = "GUARDRAIL_CALLBACK_END"
    NETWORK_ERROR = "NETWORK_ERROR"
    NETWORK_RECOVERY = "NETWORK_RECOVERY"
    CONNECTION_DROPPED = "CONNECTION_DROPPED"
    CONNECTION_RESTORED = "CONNECTION_RESTORED"
    CHECKPOINT_SAVED = "CHECKPOINT_SAVED"
    RESUME_START = "RESUME_START"
    RESUME_END = "RESUME_END"
    TOOL_REQUESTED = "TOOL_REQUESTED"
    TOOL_START = "TOOL_START"
    TOOL_RESULT = "TOOL_RESULT"
    TOOL_ERROR = "TOOL_ERROR"
    TOOL_COMPLETED = "TOOL_COMPLETED"
    DRIFT_CHECK_START = "DRIFT_CHECK_START"
    DRIFT_CHECK_RESULT = "DRIFT_CHECK_RESULT"
    DRIFT_CHECK_END = "DRIFT_CHECK_END"
    DRIFT_CHECK_SKIPPED = "DRIFT_CHECK_SKIPPED"
    FINALIZATION_START = "FINALIZATION_START"
    FINALIZATION_END = "FINALIZATION_END"
    ABORT_REQUESTED = "ABORT_REQUESTED"
    ABORT_COMPLETED = "ABORT_COMPLETED"
    CIRCUIT_OPENED = "CIRCUIT_OPENED"
    CIRCUIT_HALF_OPEN = "CIRCUIT_HALF_OPEN"
    CIRCUIT_CLOSED = "CIRCUIT_CLOSED"
    CIRCUIT_REJECTED = "CIRCUIT_REJECTED"
    RETRY_AFTER_HELD = "RETRY_AFTER_HELD"
    RETRY_BUDGET_REFUSED = "RETRY_BUDGET_REFUSED"
    GROUP_START = "GROUP_START"
    GROUP_TASK_COMPLETE = "GROUP_TASK_COMPLETE"
    GROUP_TASK_FAILED = "GROUP_TASK_FAILED"
    GROUP_TASK_CANCELLED = "GROUP_TASK_CANCELLED"
    GROUP_WINNER = "GROUP_WINNER"
    GROUP_PROGRESS = "GROUP_PROGRESS"
    CONSENSUS_REACHED = "CONSENSUS_REACHED"
    CONSENSUS_FAILED = "CONSENSUS_FAILED"
    GROUP_END = "GROUP_END"
    FAILURE_ROUTED = "FAILURE_ROUTED"
    CONTINUATION_STRATEGY = "CONTINUATION_STRATEGY"
    LENGTH_CONTINUATION = "LENGTH_CONTINUATION"
    HEDGE_START = "HEDGE_START"
    HEDGE_END = "HEDGE_END"


_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _deepcopy(value: Any) -> Any:
    # An exception (RETRY_GIVE_UP's ``exception``) is shared, not copied: many cannot be
    # rebuilt from their args, and its traceback is the point of handing it over.
    return value if isinstance(value, BaseException) else copy.deepcopy(value)


@dataclass(frozen=True, slots=True)
class ObservabilityEvent:
    """One observability event. Immutable; ``data``, ``context`` and ``meta`` are read-only.

    Attributes:
        type: The event type.
        ts: Wall-clock time in milliseconds since the epoch.
        stream_id: UUIDv7 of the session (time-ordered).
        session_id: The caller's session id, or ``stream_id``.
        data: The fields specific to this type (snake_case).
        context: The caller's ``context=`` (a copy).
        meta: The caller's ``meta=`` (a copy).
        parent_id: The stream id of the group (race, parallel, consensus, pool) or session
            this session runs under, or ``None`` for a top-level session.
    """

    type: ObservabilityEventType
    ts: float
    stream_id: str
    session_id: str
    data: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    context: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    meta: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    parent_id: str | None = None

    def __getitem__(self, key: str) -> Any:
        """A field of ``data``: ``event["attempt"]``."""
        return self.data[key]

    def get(self, key: str, default: Any = None) -> Any:
        """A field of ``data``, or ``default``."""
        return self.data.get(key, default)

    def to_dict(self) -> dict[str, Any]:
        """A plain, deep-copied dict: the common fields then the type's own fields."""
        out: dict[str, Any] = {
            "type": self.type.value,
            "ts": self.ts,
            "stream_id": self.stream_id,
            "session_id": self.session_id,
            "context": copy.deepcopy(dict(self.context)),
            "meta": copy.deepcopy(dict(self.meta)),
        }
        if self.parent_id is not None:
            out["parent_id"] = self.parent_id
        for key, value in self.data.items():
            out[key] = _deepcopy(value)
        return out

    def copy(self) -> ObservabilityEvent:
        """A deep copy, so that a callback that mutates nested values changes nothing else."""
        return ObservabilityEvent(
            type=self.type,
            ts=self.ts,
            stream_id=self.stream_id,
            session_id=self.session_id,
            data=MappingProxyType({k: _deepcopy(v) for k, v in self.data.items()}),
            context=MappingProxyType(copy.deepcopy(dict(self.context))),
            meta=MappingProxyType(copy.deepcopy(dict(self.meta))),
            parent_id=self.parent_id,
        )


_FIELDS = (
    "type",
    "ts",
    "stream_id",
    "session_id",
    "data",
    "context",
    "meta",
    "parent_id",
)
_new = object.__new__
_set_type, _set_ts, _set_stream, _set_session, _set_data, _set_context, _set_meta, _set_parent = (
    getattr(ObservabilityEvent, name).__set__ for name in _FIELDS
)


def new_event(
    kind: ObservabilityEventType,
    ts: float,
    stream_id: str,
    session_id: str,
    data: Mapping[str, Any],
    context: Mapping[str, Any],
    meta: Mapping[str, Any],
    parent_id: str | None,
) -> ObservabilityEvent:
    """An :class:`ObservabilityEvent`, built without the frozen dataclass ``__init__``.

    The same object the constructor makes (equal, frozen), in about half the time: it writes
    the slots directly instead of through ``object.__setattr__``. Sessions build one per
    event, and guardrails emit several per rule and check when an exporter reads everything.
    """
    event = _new(ObservabilityEvent)
    _set_type(event, kind)
    _set_ts(event, ts)
    _set_stream(event, stream_id)
    _set_session(event, session_id)
    _set_data(event, data)
    _set_context(event, context)
    _set_meta(event, meta)
    _set_parent(event, parent_id)
    return event


TYPES_BY_VALUE: dict[str, ObservabilityEventType] = {t.value: t for t in ObservabilityEventType}
"""Event types by name: a dict lookup, several times cheaper than calling the enum."""


_uuid_lock = threading.Lock()
_last_ms = 0
_counter = 0


def uuid7() -> str:
    """A UUIDv7 string (RFC 9562): 48-bit millisecond time, then a counter and random bits.

    Ids made in one process are strictly increasing, even within one millisecond.
    """
    global _last_ms, _counter  # noqa: PLW0603 - monotonic id state is process-wide by nature
    with _uuid_lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms = _last_ms
            _counter += 1
            if _counter > 0xFFF:
                ms += 1
                _counter = 0
        else:
            _counter = int.from_bytes(os.urandom(2), "big") & 0x3FF
        _last_ms = ms
        counter = _counter
    rand = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= (counter & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand
    return str(uuid.UUID(int=value))


_F = tuple[str, ...]

EVENT_DOCS: dict[ObservabilityEventType, tuple[str, _F]] = {
    ObservabilityEventType.SESSION_START: (
        "a session begins",
        ("attempt", "is_retry", "is_fallback", "stream_count"),
    ),
    ObservabilityEventType.STREAM_INIT: (
        "an attempt is about to call its stream factory",
        ("attempt", "fallback_index"),
    ),
    ObservabilityEventType.ADAPTER_WRAP_START: (
        "the factory returned; an adapter was chosen",
        ("stream_type", "adapter_id"),
    ),
    ObservabilityEventType.ADAPTER_DETECTED: ("the adapter in use", ("adapter_id",)),
    ObservabilityEventType.ADAPTER_WRAP_END: ("the adapter wraps the stream", ("adapter_id",)),
    ObservabilityEventType.TIMEOUT_START: (
        "the first-token timer starts",
        ("timeout_type", "configured_ms"),
    ),
    ObservabilityEventType.STREAM_READY: ("the first item arrived", ("attempt", "ttft_ms")),
    ObservabilityEventType.TIMEOUT_RESET: (
        "the timer switches to the inter-token limit",
        ("timeout_type", "configured_ms", "token_index"),
    ),
    ObservabilityEventType.TIMEOUT_TRIGGERED: (
        "a timeout fired",
        ("timeout_type", "elapsed_ms", "configured_ms"),
    ),
    ObservabilityEventType.RETRY_ATTEMPT: (
        "a failed attempt will be retried (before the backoff)",
        (
            "index",
            "attempt",
            "reason",
            "counts_toward_limit",
            "is_network",
            "is_model_issue",
            "delay_ms",
            "error_type",
            "violations",
        ),
    ),
    ObservabilityEventType.RETRY_START: (
        "a retry attempt starts (after the backoff)",
        ("attempt", "max_attempts"),
    ),
    ObservabilityEventType.RETRY_END: (
        "a session that needed retries or fallbacks succeeded",
        ("attempt", "success", "duration_ms"),
    ),
    ObservabilityEventType.RETRY_GIVE_UP: (
        "no retry and no fallback left: the session fails",
        (
            "attempts",
            "last_error",
            "category",
            "reason",
            "error_type",
            "error_message",
            "exception",
            "violations",
        ),
    ),
    ObservabilityEventType.FALLBACK_START: (
        "moving to the next fallback stream",
        ("from_index", "to_index", "reason", "error_type", "violations"),
    ),
    ObservabilityEventType.FALLBACK_MODEL_SELECTED: ("a fallback stream is in use", ("index",)),
    ObservabilityEventType.FALLBACK_END: (
        "a fallback stream succeeded",
        ("index", "duration_ms"),
    ),
    ObservabilityEventType.GUARDRAIL_PHASE_START: (
        "a guardrail check begins",
        ("phase", "rule_count"),
    ),
    ObservabilityEventType.GUARDRAIL_RULE_START: (
        "one rule is checked",
        ("index", "rule_id", "callback_id"),
    ),
    ObservabilityEventType.GUARDRAIL_RULE_RESULT: (
        "one rule's verdict",
        ("index", "rule_id", "passed", "violation"),
    ),
    ObservabilityEventType.GUARDRAIL_RULE_END: (
        "one rule finished",
        ("index", "rule_id", "passed", "callback_id", "duration_ms"),
    ),
    ObservabilityEventType.GUARDRAIL_PHASE_END: (
        "a guardrail check ends",
        ("phase", "passed", "violations", "duration_ms"),
    ),
    ObservabilityEventType.GUARDRAIL_CALLBACK_START: (
        "a deferred (slow-path) rule check starts",
        ("callback_id", "index", "rule_id"),
    ),
    ObservabilityEventType.GUARDRAIL_CALLBACK_END: (
        "a deferred rule check ends",
        ("callback_id", "index", "rule_id", "duration_ms", "success", "error"),
    ),
    ObservabilityEventType.NETWORK_ERROR: (
        "an attempt failed with a network error",
        ("error", "code", "will_retry"),
    ),
    ObservabilityEventType.CONNECTION_DROPPED: (
        "the connection broke after tokens had arrived",
        ("reason",),
    ),
    ObservabilityEventType.NETWORK_RECOVERY: (
        "a session that had network errors succeeded",
        ("attempt_count", "duration_ms"),
    ),
    ObservabilityEventType.CONNECTION_RESTORED: (
        "a stream works again after network errors",
        ("duration_ms",),
    ),
    ObservabilityEventType.CHECKPOINT_SAVED: (
        "a checkpoint was saved (continuation on)",
        ("checkpoint", "token_count"),
    ),
    ObservabilityEventType.RESUME_START: (
        "the next attempt continues from a checkpoint",
        ("checkpoint", "state_hash", "token_count"),
    ),
    ObservabilityEventType.RESUME_END: (
        "the continuing attempt ended",
        ("checkpoint", "duration_ms", "success", "overlap_chars"),
    ),
    ObservabilityEventType.TOOL_REQUESTED: (
        "the model requested a tool call (whole arguments)",
        ("tool_name", "tool_call_id", "arguments"),
    ),
    ObservabilityEventType.TOOL_START: (
        "the application started the tool (`result.tool_started`)",
        ("tool_call_id", "tool_name"),
    ),
    ObservabilityEventType.TOOL_RESULT: (
        "the tool returned (`result.tool_finished`)",
        ("tool_call_id", "result", "duration_ms"),
    ),
    ObservabilityEventType.TOOL_ERROR: (
        "the tool failed (`result.tool_finished(error=...)`)",
        ("tool_call_id", "error", "duration_ms"),
    ),
    ObservabilityEventType.TOOL_COMPLETED: ("the tool call is settled", ("tool_call_id", "status")),
    ObservabilityEventType.DRIFT_CHECK_START: (
        "a drift check begins",
        ("checkpoint", "token_count", "strategy"),
    ),
    ObservabilityEventType.DRIFT_CHECK_RESULT: (
        "a drift check's verdict",
        ("detected", "score", "metrics", "threshold"),
    ),
    ObservabilityEventType.DRIFT_CHECK_END: ("a drift check ends", ("duration_ms",)),
    ObservabilityEventType.DRIFT_CHECK_SKIPPED: ("a drift check was skipped", ("reason",)),
    ObservabilityEventType.FINALIZATION_START: ("the stream ended well; closing up", ()),
    ObservabilityEventType.FINALIZATION_END: ("closing up is done", ("duration_ms",)),
    ObservabilityEventType.SESSION_SUMMARY: (
        "the session's totals, before SESSION_END",
        (
            "status",
            "token_count",
            "start_ts",
            "end_ts",
            "duration_ms",
            "drift_detected",
            "guardrail_violations",
            "fallback_depth",
            "retry_count",
            "checkpoints_created",
            "tokens_paid",
            "tokens_kept",
            "usage_estimated",
            "attempt_usage",
            "violated_rules",
            "usage",
            "finish_reason",
            "response_model",
            "output_text",
        ),
    ),
    ObservabilityEventType.SESSION_END: ("the last event of a session", ("status",)),
    ObservabilityEventType.ABORT_REQUESTED: (
        "abort(), cancellation, or the consumer stopped early",
        ("source",),
    ),
    ObservabilityEventType.ABORT_COMPLETED: (
        "the provider stream is closed after an abort",
        ("resources_freed", "token_count"),
    ),
    ObservabilityEventType.CIRCUIT_OPENED: (
        "this session's failure opened the provider's circuit (see docs/health.md)",
        ("key", "failures", "open_ms"),
    ),
    ObservabilityEventType.CIRCUIT_HALF_OPEN: (
        "the open period is over: this attempt is the one probe",
        ("key",),
    ),
    ObservabilityEventType.CIRCUIT_CLOSED: ("the probe succeeded: the circuit closes", ("key",)),
    ObservabilityEventType.CIRCUIT_REJECTED: (
        "an open circuit refused the attempt; `action` is `fallback` or `fail`",
        ("key", "retry_in_ms", "action"),
    ),
    ObservabilityEventType.RETRY_AFTER_HELD: (
        "a shared `Retry-After` holds the attempt back; `action`: `wait`, `fallback` or `fail`",
        ("key", "wait_ms", "action"),
    ),
    ObservabilityEventType.RETRY_BUDGET_REFUSED: (
        "the provider's retry budget refused a retry (fallback or fail fast)",
        ("key", "retries", "requests", "window_ms"),
    ),
    ObservabilityEventType.GROUP_START: (
        "a race, parallel run, batch, pool or consensus begins (`kind`)",
        ("group_id", "kind", "task_count", "mode"),
    ),
    ObservabilityEventType.GROUP_TASK_COMPLETE: (
        "a task of a group finished with a value",
        ("group_id", "kind", "index", "duration_ms"),
    ),
    ObservabilityEventType.GROUP_TASK_FAILED: (
        "a task of a group failed (or its value was rejected)",
        ("group_id", "kind", "index", "error"),
    ),
    ObservabilityEventType.GROUP_TASK_CANCELLED: (
        "a task of a group was cancelled (a race was won, fail-fast, timeout)",
        ("group_id", "kind", "index"),
    ),
    ObservabilityEventType.GROUP_WINNER: (
        "a race has its winner (streaming race: its leader)",
        ("group_id", "kind", "index", "elapsed_ms"),
    ),
    ObservabilityEventType.GROUP_PROGRESS: (
        "a task of a parallel run, batch or pool settled",
        ("group_id", "kind", "done", "failed", "total"),
    ),
    ObservabilityEventType.CONSENSUS_REACHED: (
        "the outputs agree enough for the strategy",
        ("group_id", "kind", "strategy", "agreement", "outputs"),
    ),
    ObservabilityEventType.CONSENSUS_FAILED: (
        "the outputs do not agree enough, or too few tasks succeeded",
        ("group_id", "kind", "strategy", "agreement", "outputs", "reason"),
    ),
    ObservabilityEventType.GROUP_END: (
        "the last event of a group",
        ("group_id", "kind", "status", "duration_ms"),
    ),
    ObservabilityEventType.FAILURE_ROUTED: (
        "`Retry.fallback_on` or `Timeout.total` overrode retrying the same stream: the failure "
        "goes to the fallback at once (`decision` `fallback`) or to the caller (`raise`)",
        ("failure", "decision", "reason"),
    ),
    ObservabilityEventType.CONTINUATION_STRATEGY: (
        "a continuation attempt's factory reports how it asked to continue (`prefill`, `user`, "
        "`restart` …) and which strategies the provider rejected first",
        ("strategy", "rejected"),
    ),
    ObservabilityEventType.LENGTH_CONTINUATION: (
        "the answer stopped at the token limit and `continue_on_length` requests the next part",
        ("continuation", "max_continuations", "token_count"),
    ),
    ObservabilityEventType.HEDGE_START: (
        "`hedge_after` passed without a first token: a hedge attempt starts in parallel",
        ("attempt", "fallback_index", "after_ms"),
    ),
    ObservabilityEventType.HEDGE_END: (
        "one of the hedged attempts delivered a token first; the other is closed",
        ("winner", "winner_attempt", "loser_attempt"),
    ),
}
"""For each event type: when it is emitted and its own fields (besides the common ones)."""


def event_reference_markdown() -> str:
    """The event reference table of the docs, generated from :data:`EVENT_DOCS`."""
    lines = [
        "| type | emitted when | fields |",
        "| --- | --- | --- |",
    ]
    for kind in ObservabilityEventType:
        when, names = EVENT_DOCS[kind]
        shown = ", ".join(f"`{name}`" for name in names) or "(none)"
        lines.append(f"| `{kind.value}` | {when} | {shown} |")
    return "\n".join(lines) + "\n"
