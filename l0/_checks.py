"""Guardrails, drift and checkpoints, run every few tokens (never per token)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from l0._session_base import _CHECKPOINT_TEXT_LIMIT, _OBS, _TOKEN, SessionBase
from l0.errors import (
    DriftError,
    GuardrailError,
)
from l0.types import (
    Event,
    GuardrailViolation,
)

_NEVER = 1 << 62


class ChecksMixin(SessionBase):
    """Incremental guardrail/drift checks over the text added since the last check."""

    __slots__ = ()

    # --- guardrails, drift, checkpoints (every few tokens, never per token) ----------------------

    def _checks_start(self) -> None:
        opts = self._opts
        if opts.guardrails is None and opts.drift is None and not opts.continuation:
            # Nothing to check: no emitter lookups per attempt (issue 11, session set-up).
            self._guard_run = self._drift_run = None
            self._checked = self._overlap_removed = self._notify_after = self._interval = 0
            self._checks_on = False
            self._next_check = 1 << 62
            self._next_checkpoint = opts.intervals["checkpoint"]
            return
        guard_emit, drift_emit = self._check_emitters()
        self._guard_run = opts.guardrails.start(guard_emit) if opts.guardrails is not None else None
        self._drift_run = opts.drift.start(drift_emit) if opts.drift is not None else None
        self._checked = 0
        self._drift_held: list[str] = []
        self._drift_chars = 0
        self._drift_due = self._drift_run.wants if self._drift_run is not None else 0
        self._overlap_removed = 0
        intervals = []
        if self._guard_run is not None and self._guard_run.streams:
            intervals.append(opts.intervals["guardrails"])
        if self._drift_run is not None:
            intervals.append(opts.intervals["drift"])
        if opts.continuation:
            intervals.append(opts.intervals["checkpoint"])
        self._checks_on = bool(intervals)
        self._interval = min(intervals) if intervals else 0
        self._next_check = self._interval if intervals else 1 << 62
        # Without continuation no checkpoint is ever due: one comparison per check decides.
        self._next_checkpoint = opts.intervals["checkpoint"] if opts.continuation else _NEVER
        # Whether anyone hears of checkpoints is fixed for the session: asked once, not at
        # every checkpoint (nobody: the first notification is never due).
        wants = self._wants_checkpoints or self._wants(_OBS.CHECKPOINT_SAVED)
        self._notify_after = 0 if wants else _NEVER

    def _check(self) -> None:
        """Run guardrails/drift over the text since the last check; save a checkpoint."""
        state = self.state
        parts = state._parts
        n = len(parts)
        self._next_check = n + self._interval
        guard = self._guard_run
        drift = self._drift_run
        if guard is not None or drift is not None:
            delta = "".join(parts[self._checked :])
            self._checked = n
            if guard is not None:
                violations = guard.feed(delta, state)
                if violations:
                    self._handle_violations(violations)
            if drift is not None:
                # The drift run only queues text until a window of it is new: it is held here
                # (an append per check instead of a call) and handed over joined when due.
                self._drift_held.append(delta)
                chars = self._drift_chars = self._drift_chars + len(delta)
                if chars >= self._drift_due:
                    self._feed_drift(chars)
        else:
            self._checked = n
        if n >= self._next_checkpoint:
            self._next_checkpoint = n + self._opts.intervals["checkpoint"]
            state._checkpoint_at = n
            self._checkpoints += 1
            if n >= self._notify_after:
                text = state.checkpoint
                # Each notification copies the whole checkpoint; past 64 KB they are thinned to
                # one per 50% growth so a very long answer still costs linear time overall.
                if len(text) > _CHECKPOINT_TEXT_LIMIT:
                    self._notify_after = n + n // 2
                self._obs(_OBS.CHECKPOINT_SAVED, checkpoint=text, token_count=state.token_count)
                self._notify("on_checkpoint", text, state.token_count)

    def _feed_drift(self, chars: int) -> None:
        drift = self._drift_run
        assert drift is not None
        held = self._drift_held
        text = held[0] if len(held) == 1 else "".join(held)
        held.clear()
        result = drift.feed(text)
        self._drift_due = chars + max(drift.wants, 1)
        if result is not None and result.detected:
            self._handle_drift(result)

    def _check_before(self, event: Event | None) -> None:
        """``_check`` while ``event`` is not yet delivered to the consumer.

        If a guardrail or drift check rejects the output here, the token that triggered the
        check is dropped from this attempt's text, so that the RESET event withdraws exactly
        what the consumer was shown.
        """
        try:
            self._check()
        except Exception:
            if event is not None and event.type is _TOKEN and event.text:
                self.state._parts.pop()
            raise

    def _finish_checks(self) -> None:
        if not self._checks_on and self._guard_run is None:
            return
        state = self.state
        if self._checks_on and self._checked < len(state._parts):
            self._next_check = 0
            self._check()
        if self._guard_run is not None:
            violations = self._guard_run.finish(state)
            if violations:
                self._handle_violations(violations)
        if self._drift_run is not None:
            if self._drift_held:
                self._drift_run.feed("".join(self._drift_held))
                self._drift_held.clear()
            result = self._drift_run.finish(state.content)
            if result is not None and result.detected:
                self._handle_drift(result)

    def _handle_violations(self, violations: Sequence[GuardrailViolation]) -> None:
        state = self.state
        worst = None
        for violation in violations:
            state.violations.append(violation)
            self._notify("on_violation", violation)
            if violation.severity == "fatal" or not violation.recoverable:
                worst = "fatal"
            elif violation.severity == "error" and worst is None:
                worst = "error"
        if worst is None:
            return
        blocking = [v for v in violations if v.severity != "warning" or not v.recoverable]
        summary = "; ".join(f"{v.rule}: {v.message}" for v in blocking[:3])
        raise GuardrailError(f"guardrail violation ({summary})", blocking, fatal=worst == "fatal")

    def _handle_drift(self, result: Any) -> None:
        self.state.drift_detected = True
        types = list(result.types)
        self._notify("on_drift", types, result.confidence)
        raise DriftError(
            f"drift detected: {', '.join(types)} (confidence {result.confidence:.2f})",
            types=types,
            confidence=result.confidence,
        )
