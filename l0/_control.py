"""Timers, abort and stream closing: everything that cancels a parked session."""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading

from l0._session_base import _CLOSE_GRACE, _INF, _OBS, SessionBase, _Abandon, _now
from l0.errors import (
    DeadlineExceededError,
    InitialTokenTimeoutError,
    InterTokenTimeoutError,
    StreamTimeoutError,
)

log = logging.getLogger("l0")


class _Waiting(threading.local):
    """This thread's sessions whose timer is armed at the event loop's next iteration."""

    loop: asyncio.AbstractEventLoop | None = None
    sessions: list[ControlMixin] | None = None


_waiting = _Waiting()
_BATCH_LIMIT = 256
"""Sessions queued before a batch is armed at once (a loop that never runs holds no more)."""
_LOOK = 1 / 16
"""Share of the inter-token limit between two looks of a session whose loop skips the clock."""


def _arm_batch(sessions: list[ControlMixin]) -> None:
    if _waiting.sessions is sessions:
        _waiting.sessions = None
    for session in sessions:
        session._arm_due()


class ControlMixin(SessionBase):
    """Timeout timers (at most one handle per attempt), abort, and closing the provider stream.

    A timer is only made for an attempt that actually waits: arming is deferred to one
    callback per event-loop iteration, shared by every session that asked in it. A provider
    that yields without suspending never lets the loop run, so its attempt ends before the
    callback and needs no handle; one that waits is armed before the loop can sleep, for the
    same absolute deadline as if it had been armed at once.
    """

    __slots__ = ()

    # --- timers --------------------------------------------------------------------------------

    def _arm(self, when: float) -> None:
        loop = self._loop
        assert loop is not None
        # Timeout.total caps every timer: whatever the phase, the session deadline fires too.
        self._handle = loop.call_at(min(when, self._deadline), self._on_timer)

    def _arm_soon(self, when: float) -> None:
        """Arm the timer for ``when`` at the loop's next iteration (if it is still wanted)."""
        self._due = when
        if self._arm_queued:
            return
        self._arm_queued = True
        loop = self._loop
        assert loop is not None
        waiting = _waiting
        sessions = waiting.sessions
        if sessions is None or waiting.loop is not loop or len(sessions) >= _BATCH_LIMIT:
            if sessions is not None and waiting.loop is loop:
                _arm_batch(sessions)  # the loop has not run for a while: arm these now
            sessions = waiting.sessions = []
            waiting.loop = loop
            loop.call_soon(_arm_batch, sessions)
        sessions.append(self)

    def _arm_due(self) -> None:
        if not self._arm_queued:
            return
        self._arm_queued = False
        due = self._due
        if due is not None and self._handle is None and not self.finished:
            self._arm(due)

    def _start_timer(self) -> None:
        timeout = self._opts.timeout
        initial, inter = timeout.initial_token, timeout.inter_token
        limit = initial if initial is not None else inter
        if limit is None:
            if self._deadline < _INF:
                self._arm_soon(self._deadline)
            return
        # One handle per attempt: set for the earlier of the two limits, it already covers the
        # gap after a quick first token (``_first_item`` keeps it); firing early while the
        # first token is still within its limit only re-arms it (``_on_timer``).
        self._arm_soon(self._attempt_start + (limit if inter is None else min(limit, inter)))
        if self._observed:
            self._obs(
                _OBS.TIMEOUT_START,
                timeout_type="initial" if initial is not None else "inter",
                configured_ms=int(limit * 1000),
            )

    def _stop_timer(self) -> None:
        self._due = None
        if self._arm_queued:
            # Nothing is due any more. When this session was the last to ask (a stream that
            # never waited, in a loop that has not run since), leave the batch now rather than
            # stay referenced, with all it holds, until the batch runs (issue 11).
            sessions = _waiting.sessions
            if sessions and sessions[-1] is self:
                sessions.pop()
                self._arm_queued = False
        handle = self._handle
        if handle is not None:
            handle.cancel()
            self._handle = None

    def _on_timer(self) -> None:
        self._handle = None
        timeout = self._opts.timeout
        now = _now()
        if now >= self._deadline:
            if not self._parked:
                # The consumer holds the session; the deadline fires when it next waits.
                self._arm_after(now + 0.01)
                return
            total = timeout.total or 0.0
            self._fire(
                DeadlineExceededError(
                    f"the session ran for {now - (self.state.started_at or now):.3f}s "
                    f"(Timeout.total={total}s)",
                    elapsed=now - (self.state.started_at or now),
                    configured=total,
                )
            )
            return
        last = self._last
        if last == 0.0:
            limit = timeout.initial_token
            kind = "initial"
            since = self._attempt_start
        else:
            limit = timeout.inter_token
            kind = "inter"
            if self._clockless and limit is not None:
                # The read loops skip the clock per token. Looks every limit/16 tell whether a
                # token came since the previous look: the newest came no later than now, so a
                # gap is never judged longer than it was, and one that is too long is reported
                # at most limit/16 late.
                seen = len(self.state._parts)
                if seen != self._seen:
                    self._seen = seen
                    self._last = last = now
                if now < last + limit and self._parked:
                    self._arm(min(last + limit, now + limit * _LOOK))
                    return
            since = last
        if limit is None:
            # This phase has no limit; look again when the other phase's limit could expire.
            other = timeout.inter_token if kind == "initial" else timeout.initial_token
            self._arm(now + (other or 1.0))
            return
        deadline = since + limit
        if now < deadline or not self._parked:
            # A token arrived since the timer was set, or the consumer holds the session:
            # only provider silence counts, so wait for the real deadline.
            self._arm(max(deadline, now + 0.001) if self._parked else now + limit)
            return
        elapsed = now - since
        error_type = InitialTokenTimeoutError if kind == "initial" else InterTokenTimeoutError
        self._fire(
            error_type(
                f"no {'first token' if kind == 'initial' else 'token'} for {elapsed:.3f}s "
                f"(Timeout.{kind}_token={limit}s)",
                elapsed=elapsed,
                configured=limit,
            )
        )

    def _arm_after(self, when: float) -> None:
        loop = self._loop
        assert loop is not None
        self._handle = loop.call_at(when, self._on_timer)

    def _fire(self, error: StreamTimeoutError) -> None:
        self._fired = error
        task = self._task
        if task is not None and not task.done():
            task.cancel(msg="l0 timeout")

    # --- abort ---------------------------------------------------------------------------------

    def abort(self) -> None:
        """Stop the session now; see :meth:`l0.Result.abort`."""
        if self.finished or self._abort_requested:
            return
        self._abort_requested = True
        task = self._task
        if self._parked and task is not None and not task.done():
            task.cancel(msg="l0 abort")
            return
        # The consumer holds the session (between events) or never started it: close the
        # provider stream now rather than when the consumer comes back.
        self._stop_timer()
        if self._iterator is not None or self._source is not None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:
                self._closing = loop.create_task(self._close_stream(), name="l0-abort-close")
        self._report_abort("user")

    def _report_abort(self, source: str) -> None:
        if self._aborted_reported:
            return
        self._aborted_reported = True
        self._obs(_OBS.ABORT_REQUESTED, source=source)
        state = self.state
        state.aborted = True
        state.ended_at = _now()
        self.finished = True
        self._notify("on_abort", state.token_count, len(state.content))
        self._obs(_OBS.ABORT_COMPLETED, resources_freed=True, token_count=state.token_count)
        self._summary("aborted")

    async def _close_stream(self) -> None:
        iterator, source = self._iterator, self._source
        self._iterator = self._source = None
        for obj in (iterator, source) if source is not iterator else (iterator,):
            if obj is None:
                continue
            closer = getattr(obj, "aclose", None) or getattr(obj, "close", None)
            if closer is None:
                continue
            try:
                async with asyncio.timeout(_CLOSE_GRACE):
                    result = closer()
                    if inspect.isawaitable(result):
                        await result
            except (Exception, asyncio.CancelledError) as exc:
                if isinstance(exc, asyncio.CancelledError):
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        raise
                log.debug("l0: closing the provider stream raised %r", exc)

    async def _sleep(self, delay: float) -> None:
        if delay <= 0:
            return
        self._parked = True
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            task = self._task
            if self._abort_requested and task is not None and task.uncancel() == 0:
                raise _Abandon from None
            raise
        finally:
            self._parked = False

    def _cancel_is_ours(self) -> bool:
        """True when a CancelledError came from our timer or from abort()."""
        return self._fired is not None or self._abort_requested

    def _take_fired(self) -> StreamTimeoutError | None:
        """The timeout that fired (cleared), or None when the cancel came from abort()."""
        fired = self._fired
        self._fired = None
        return None if self._abort_requested else fired

    def _first_item(self) -> None:
        state = self.state
        state.first_token_at = self._last
        inter = self._opts.timeout.inter_token
        # Switch to the gap limit. The attempt's handle, when set no later than the gap's end,
        # stays: when it fires it re-arms for the real deadline (one timer per attempt).
        handle = self._handle
        if inter is not None:
            self._seen = len(state._parts) + 1  # the first item, appended next when text
            due = min(self._last + (inter * _LOOK if self._clockless else inter), self._deadline)
            if handle is None:
                queued = self._due
                if queued is None or queued > due:
                    self._arm_soon(due)
            elif handle.when() > due:
                self._stop_timer()
                self._arm(due)
        else:
            self._stop_timer()
            if self._deadline < _INF:
                self._arm_soon(self._deadline)
        if not self._observed:
            return
        self._obs(
            _OBS.STREAM_READY,
            attempt=state.attempt,
            ttft_ms=int((self._last - self._attempt_start) * 1000),
        )
        if inter is not None:
            self._obs(
                _OBS.TIMEOUT_RESET,
                timeout_type="inter",
                configured_ms=int(inter * 1000),
                token_index=0,
            )
