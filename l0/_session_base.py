"""The session's shared state, callbacks and observability events."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

from l0._callbacks import Notifier
from l0._dispatch import ExportView, hook_table
from l0._options import (
    _HOOK_ARGS,
    _Options,
)
from l0._usage import CHARS_PER_TOKEN, usage_int, usage_summary
from l0.errors import (
    AttemptError,
    StreamTimeoutError,
)
from l0.events import (
    TYPES_BY_VALUE,
    ObservabilityEventType,
    current_parent,
    new_event,
    uuid7,
    without_request_messages,
)
from l0.health import SessionHealth
from l0.types import (
    EventType,
    State,
)

log = logging.getLogger("l0")

_now = time.monotonic
_OBS = ObservabilityEventType
_TOKEN = EventType.TOKEN
_RESET_EVENT = EventType.RESET
_INF = float("inf")
_END: Any = object()
_CHECKPOINT_TEXT_LIMIT = 65536
_CLOSE_GRACE = 2.0
_NO_EXPORTS = ExportView((), frozenset(), ())
_NOTHING_WANTED: frozenset[str] = frozenset()
_CHECK_FLAGS: dict[frozenset[str], tuple[bool, bool]] = {}
"""Per export-type set: does it hold guardrail events, drift events."""
"""Seconds allowed for closing an abandoned provider stream before L0 stops waiting on it."""


class _Abandon(Exception):
    """Internal: the attempt ended because of a timeout timer or an abort request."""


class SessionBase:
    """The state every part of a session shares, plus notification and event emission.

    :class:`l0._runtime.Session` combines this with one mixin per concern (timers and abort,
    checks, continuation, attempts, retry decisions); each mixin only adds methods.
    """

    __slots__ = (
        "_abort_requested",
        "_aborted_reported",
        "_arm_queued",
        "_attempt_no",
        "_attempt_start",
        "_checked",
        "_checkpoints",
        "_checks_on",
        "_clockless",
        "_closing",
        "_content",
        "_deadline",
        "_deadline_hit",
        "_drift_chars",
        "_drift_due",
        "_drift_held",
        "_drift_run",
        "_due",
        "_exports",
        "_fired",
        "_guard_run",
        "_handle",
        "_health",
        "_hedge_source",
        "_hedged_to",
        "_interval",
        "_iterator",
        "_last",
        "_loop",
        "_next_check",
        "_next_checkpoint",
        "_notifier_made",
        "_notifies",
        "_notify_after",
        "_observed",
        "_opts",
        "_overlap_removed",
        "_parked",
        "_plain",
        "_raw",
        "_raw_list",
        "_recording",
        "_response_model",
        "_seen",
        "_source",
        "_start_ts",
        "_started",
        "_stream_id",
        "_stream_retries",
        "_table",
        "_task",
        "_tool_starts",
        "_usage_before",
        "_wanted",
        "_wants_checkpoints",
        "errors",
        "finished",
        "parent_id",
        "state",
    )

    # Set by ChecksMixin._checks_start before every attempt (declared here for the type checker).
    _guard_run: Any
    _drift_run: Any
    _checked: int
    _checks_on: bool
    _interval: int
    _next_check: int
    _next_checkpoint: int
    _overlap_removed: int
    _notify_after: int

    def __init__(self, opts: _Options) -> None:
        self._opts = opts
        self.state = State()
        # Retries of the stream now running, (counted toward attempts, not counted): each
        # fallback gets a fresh budget, while State's counters cover the whole session.
        self._stream_retries = (0, 0)
        self.errors: list[AttemptError] = []
        # Made on first use: a session nobody observes never needs its id.
        self._stream_id: str | None = None
        self.parent_id = current_parent.get()
        self.finished = False
        table = self._table = hook_table(opts.plugins)
        if table.export or opts.callbacks or opts.record is not None:
            self._observers(opts, table)
        else:  # nobody could observe this session: no exporter, callback or recording
            self._recording: Any = None
            self._exports: tuple[Any, ...] = ()
            self._observed = False
            self._wanted: frozenset[str] | None = _NOTHING_WANTED
            self._content = False
            if opts.meta:
                opts.meta = without_request_messages(opts.meta)
        self._notifier_made: Notifier | None = None
        self._notifies = bool(opts.callbacks) or bool(table.lifecycle)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._due: float | None = None
        self._arm_queued = False
        self._fired: StreamTimeoutError | None = None
        self._parked = False
        self._last = 0.0
        # Read loops that skip the clock per token: the timer tells progress by the number of
        # parts it last saw (``ControlMixin._on_timer``).
        self._clockless = False
        self._seen = 0
        self._attempt_start = 0.0
        self._abort_requested = False
        self._aborted_reported = False
        self._iterator: Any = None
        self._source: Any = None
        self._closing: asyncio.Task[None] | None = None
        self._deadline = _INF
        self._usage_before: Any = None
        self._hedge_source: Any = None
        self._hedged_to = 0
        self._attempt_no = 0
        self._deadline_hit = False
        self._raw: list[Any] | None = None  # made by the first chunk an adapter hands over
        self._raw_list: Sequence[Any] | None = None
        self._started = False
        # The check state (_guard_run, _drift_run, _checked, _checks_on, _interval,
        # _next_check, _next_checkpoint, _overlap_removed, _notify_after) is set by
        # _checks_start before each attempt, never read before: not written twice here.
        self._tool_starts: dict[str, float] | None = None  # made by the first tool_started()
        self._checkpoints = 0
        self._start_ts = 0.0
        self._health: SessionHealth | None = (
            None if opts.health is None else SessionHealth(*opts.health)
        )
        self._response_model: str | None = None
        self._wants_checkpoints = (
            "on_checkpoint" in opts.callbacks or "l0_on_checkpoint" in self._table.lifecycle
        )
        # Nobody to tell anything and nothing around the stream: ``read()`` may take the plain
        # path (``Session.read_text``).
        self._plain = (
            not self._observed
            and not self._notifies
            and self._health is None
            and opts.hedge_after is None
        )

    def _observers(self, opts: _Options, table: Any) -> None:
        """Who hears of this session: exporters, ``on_event``, a recording."""
        self._recording = None
        if opts.record is not None:
            from l0.record import SessionRecording

            self._recording = SessionRecording(
                opts.record, self.stream_id, opts.session_id or self.stream_id
            )
        # Exporters whose backend is not set up (``l0_active``) are left out of this session;
        # when none is left, and nobody else observes, no event is ever built (issue 11).
        view = table.session_view() if table.export else _NO_EXPORTS
        self._exports = view.pairs
        everything = "on_event" in opts.callbacks or self._recording is not None
        self._observed = bool(view.pairs) or everything
        # Exporters that name their event types spare the session from building the others
        # (guardrail events come every check, several per rule) (#9).
        self._wanted = None if everything else view.types
        # Prompt and completion text reach exporters only when one asks (``l0_wants_content``).
        self._content = bool(view.content) and view.wants_content()
        if not self._content and opts.meta:
            opts.meta = without_request_messages(opts.meta)

    @property
    def stream_id(self) -> str:
        """The session's UUIDv7, made when first asked for (observed sessions: at the start)."""
        stream_id = self._stream_id
        if stream_id is None:
            stream_id = self._stream_id = uuid7()
        return stream_id

    async def wait_callbacks(self) -> None:
        """Wait for queued callbacks of this session to finish (and its record to be on disk)."""
        if self._notifier_made is not None:
            await self._notifier_made.wait()
        recording = self._recording
        if recording is not None:
            await asyncio.to_thread(recording.flush)
            if recording.error is not None:
                self.state.record_error = recording.error
        closing = self._closing
        if closing is not None:
            await closing

    @property
    def raw_chunks(self) -> list[Any]:
        """Provider chunks of the current attempt (adapters' ``Event.raw``, or str tokens)."""
        if self._raw_list is not None:
            return list(self._raw_list)
        if self._raw:
            return list(self._raw)
        return list(self.state._parts)

    # --- notifications -------------------------------------------------------------------------

    @property
    def _notifier(self) -> Notifier:
        """The session's callback queue, made on first use (most sessions have no callbacks)."""
        notifier = self._notifier_made
        if notifier is None:
            notifier = self._notifier_made = Notifier()
        return notifier

    def _notify(self, name: str, *args: Any) -> None:
        if not self._notifies:
            return
        callback = self._opts.callbacks.get(name)
        if callback is not None:
            self._notifier.call(name, callback, args)
        caller = self._table.lifecycle.get(f"l0_{name}")
        if caller is not None:
            names = _HOOK_ARGS[name]

            def call_hook(*copied: Any, _caller: Any = caller, _names: Any = names) -> None:
                _caller(**dict(zip(_names, copied, strict=True)))

            self._notifier.call(f"l0_{name}", call_hook, args)

    def _obs(self, kind: ObservabilityEventType, **data: Any) -> None:
        if not self._observed:
            return
        wanted = self._wanted
        if wanted is not None and kind not in wanted:
            return
        self._deliver(kind, data)

    def _deliver(self, kind: ObservabilityEventType, data: dict[str, Any]) -> None:
        opts = self._opts
        event = new_event(
            kind,
            time.time_ns() / 1_000_000,
            self.stream_id,
            opts.session_id or self.stream_id,
            MappingProxyType(data),
            opts.context,
            opts.meta,
            self.parent_id,
        )
        for export, types in self._exports:
            if types is not None and kind not in types:
                continue
            try:
                export(event)
            except Exception:
                self._notifier.failed(f"exporter {getattr(export, '__qualname__', export)}")
        on_event = opts.callbacks.get("on_event")
        if on_event is not None:
            self._notifier.call("on_event", on_event, (event,))
        recording = self._recording
        if recording is not None:
            recording.obs(event)
            if kind is _OBS.SESSION_END:
                recording.session_end(str(data.get("status", "")))

    def _account(self, outcome: str, kept_chars: int | None = None) -> None:
        """Record the attempt that just ended; ``kept_chars`` defaults to all it streamed."""
        state = self.state
        if outcome == "success":
            # The answer is read next: join it now (``content`` keeps the join) and count that.
            _ = state.content
            parts_chars = len(state._joined)
        else:
            parts_chars = sum(map(len, state._parts))
        chars = parts_chars + self._overlap_removed
        kept = parts_chars if kept_chars is None else max(0, min(kept_chars, parts_chars))
        usage = state.usage if state.usage is not self._usage_before else None
        completion = prompt = None
        if usage is not None:
            completion = usage_int(usage, "completion_tokens", "output_tokens")
            prompt = usage_int(usage, "prompt_tokens", "input_tokens")
        if completion is None:
            paid = -(-chars // CHARS_PER_TOKEN)
            kept_tokens = -(-kept // CHARS_PER_TOKEN)
            estimated = True
        else:
            paid = completion
            kept_tokens = round(completion * kept / chars) if chars else 0
            estimated = False
        # The fields of an AttemptUsage, made into one when state.attempts is read.
        state._usage_rows.append(
            (
                self._attempt_no or state.attempt,
                state.fallback_index,
                outcome,
                paid,
                kept_tokens,
                prompt,
                estimated,
                chars,
            )
        )
        self._usage_before = state.usage

    def _wants(self, kind: ObservabilityEventType) -> bool:
        """Whether an event of ``kind`` would reach anyone (so it is worth building)."""
        wanted = self._wanted
        return self._observed and (wanted is None or kind in wanted)

    def _check_emitters(self) -> tuple[Any, Any]:
        """``emit`` for guardrails and for drift: ``None`` when nobody reads their events."""
        emit = self._emit_fn if self._observed else None
        wanted = self._wanted
        guard_emit = drift_emit = emit
        if emit is not None and wanted is not None:
            # Unobserved guardrails take their fast path: no events built per check (#9).
            # The export table's set is shared by sessions: scan it once (issue 11).
            flags = _CHECK_FLAGS.get(wanted)
            if flags is None:
                flags = (
                    any(kind.startswith("GUARDRAIL_") for kind in wanted),
                    any(kind.startswith("DRIFT_") for kind in wanted),
                )
                if len(_CHECK_FLAGS) > 64:
                    _CHECK_FLAGS.clear()
                _CHECK_FLAGS[wanted] = flags
            if not flags[0]:
                guard_emit = None
            if not flags[1]:
                drift_emit = None
        return guard_emit, drift_emit

    def _emit_fn(self, kind: str, **fields: Any) -> None:
        # Guardrail and drift events, several per rule and check: no enum call, no re-packing.
        obs_kind = TYPES_BY_VALUE[kind]
        wanted = self._wanted
        if self._observed and (wanted is None or obs_kind in wanted):
            self._deliver(obs_kind, fields)

    def _summary(self, status: str) -> None:
        if not self._observed:
            # Callback failures are counted per session; their counts are logged at its end.
            # (No callbacks, hooks or exporters: nothing could have failed.)
            if self._notifies:
                self._notifier.finish()
            return
        state = self.state
        self._obs(
            _OBS.SESSION_SUMMARY,
            status=status,
            token_count=state.token_count,
            start_ts=self._start_ts,
            end_ts=time.time_ns() / 1_000_000,
            duration_ms=int((state.duration or 0.0) * 1000),
            drift_detected=state.drift_detected,
            guardrail_violations=len(state.violations),
            fallback_depth=state.fallback_index,
            retry_count=state.total_retries,
            checkpoints_created=self._checkpoints,
            **usage_summary(state.attempts),
            violated_rules=[v.rule for v in state.violations],
            usage=dict(state.usage) if state.usage is not None else None,
            finish_reason=state.finish_reason,
            response_model=self._response_model,
            output_text=state.content if self._content else None,
        )
        self._obs(_OBS.SESSION_END, status=status)
        self._notifier.finish()
