"""The session state machine: attempts, retries, fallbacks, timeouts, abort.

One :class:`Session` per ``l0.run`` call. It runs inside the consumer's task (pull-based, no
queue between provider and consumer), which keeps the per-token path to a type check, an append
and one clock read:

* Timeouts use one timer handle per attempt, not a timer per token. Each token stores
  ``time.monotonic()``; when the timer fires it compares that stamp with the limit and either
  re-arms itself for the real deadline or cancels the task (the technique of
  ``asyncio.timeout``, with ``Task.uncancel`` telling our cancel from a caller's).
* The timer only fires while the session is *parked* in an await it owns (the provider or a
  backoff sleep). Time the consumer spends between events never counts as a stall.
* ``abort()`` cancels the task when it is parked; otherwise it closes the provider stream right
  away and the consumer gets ``AbortedError`` at its next step.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from l0._attempt import _ASYNC_GENERATOR, AttemptMixin
from l0._checks import ChecksMixin
from l0._continuation import ContinuationMixin, _overlap
from l0._control import ControlMixin
from l0._decisions import DecisionsMixin
from l0._health_run import HealthMixin
from l0._options import (
    CALLBACK_NAMES,
    DEFAULT_INTERVALS,
    DEFAULT_MAX_OVERLAP,
    _Options,
)
from l0._session_base import _END, _OBS, _TOKEN, _Abandon, _now
from l0._usage import CHARS_PER_TOKEN, usage_summary
from l0.errors import (
    AbortedError,
    AttemptError,
    ZeroOutputError,
)
from l0.types import (
    AttemptContext,
    ErrorCategory,
    Event,
    EventType,
)

__all__ = [
    "CALLBACK_NAMES",
    "DEFAULT_INTERVALS",
    "DEFAULT_MAX_OVERLAP",
    "Session",
    "_Options",
    "_overlap",
]


_FIRST_CONTEXT = AttemptContext(attempt=1, fallback_index=0, is_retry=False, is_fallback=False)
"""What a factory that asks is given for a first attempt (frozen: one serves every session)."""


class Session(
    ControlMixin, ChecksMixin, ContinuationMixin, AttemptMixin, DecisionsMixin, HealthMixin
):
    """Runs one ``l0.run`` call. Created by :func:`l0.run`; used through :class:`l0.Result`."""

    __slots__ = ()

    # --- the run -------------------------------------------------------------------------------

    def _begin(self) -> None:
        if self._started:
            raise RuntimeError("this L0 result is already being consumed; iterate or read it once")
        self._started = True
        loop = self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task(loop)
        state = self.state
        state.started_at = _now()
        opts = self._opts
        if opts.timeout.total is not None:
            self._deadline = state.started_at + opts.timeout.total
        if self._observed:
            # Wall-clock time only for events; an unobserved session never needs it.
            self._start_ts = time.time_ns() / 1_000_000
            self._obs(
                _OBS.SESSION_START,
                attempt=1,
                is_retry=False,
                is_fallback=False,
                stream_count=len(opts.factories),
            )

    async def run(self, emit: bool, carried: BaseException | None = None) -> AsyncIterator[Event]:
        """The session as an async generator of consumer events.

        With ``emit=False`` (``read()``) tokens are only accumulated, never wrapped in events.
        ``carried``: the first attempt already ran in :meth:`read_text` and ended with this
        exception; the session goes on from there as if it had been raised here.
        """
        if carried is None:
            self._begin()
        opts = self._opts
        state = self.state
        notify = self._notify
        notifies = self._notifies  # fixed for the session: no call when nobody listens
        n_streams = len(opts.factories)
        resume: tuple[str, int] | None = None
        network_failures = 0
        try:
            if self._abort_requested and carried is None:
                raise AbortedError("the session was aborted before it started")
            for index in range(n_streams):
                state.fallback_index = index
                self._stream_retries = (0, 0)
                retry_index = 0
                if index > 0:
                    self._obs(_OBS.FALLBACK_MODEL_SELECTED, index=index)
                while True:
                    if carried is None:
                        state.attempt += 1
                    checkpoint, checkpoint_tokens = resume or ("", 0)
                    prompt = self._begin_resume(checkpoint, checkpoint_tokens) if resume else None
                    # Only factories that take it (and hedges, which copy it) get a context.
                    ctx = (
                        AttemptContext(
                            attempt=state.attempt,
                            fallback_index=index,
                            is_retry=retry_index > 0,
                            is_fallback=index > 0,
                            checkpoint=checkpoint,
                            continuation_prompt=prompt,
                            report_continuation=self._report_continuation if resume else None,
                        )
                        if opts.takes_ctx[index] or opts.hedge_after is not None
                        else None
                    )
                    if retry_index > 0:
                        self._obs(
                            _OBS.RETRY_START,
                            attempt=state.attempt,
                            max_attempts=opts.retry.max_retries + 1,
                        )
                    if notifies:
                        notify("on_start", state.attempt, retry_index > 0, index > 0)
                    if carried is None:
                        if state.attempt > 1:  # a new session's state is already clean
                            state._reset_attempt(checkpoint, checkpoint_tokens)
                        self._raw = None
                        self._raw_list = None
                        self._last = 0.0
                        self._clockless = not emit
                        self._attempt_start = _now()
                        self._fired = None
                        self._attempt_no = state.attempt
                        self._hedged_to = 0
                        self._checks_start()
                    delivered = False
                    try:
                        if carried is not None:
                            failed, carried = carried, None
                            raise failed
                        if self._health is not None:
                            await self._health_admit(index, retry_index > 0)
                        if self._observed:
                            self._obs(_OBS.STREAM_INIT, attempt=state.attempt, fallback_index=index)
                        self._start_timer()
                        if opts.hedge_after is None:
                            # Inline: most factories return an async generator (nothing to
                            # await), so no coroutine is made to open it.
                            source = self._call_factory(index, ctx)
                            if type(source) is _ASYNC_GENERATOR:
                                iterator = self._adopt(source)
                            else:
                                iterator = await self._open_source(source)
                            self._parked = True
                            first = await anext(iterator, _END)
                        else:
                            iterator, first = await self._open_first(index, ctx, n_streams)
                        parts = state._parts
                        append = parts.append
                        self._parked = True
                        self._last = _now()
                        pending: list[Any] = []
                        if first is not _END:
                            self._first_item()
                            if self._health is not None:
                                await self._health_answered()
                            if resume and opts.remove_overlap:
                                pending = await self._trim_overlap(iterator, first)
                            else:
                                pending = [first]
                        for item in pending:
                            if item is _END:
                                break
                            if type(item) is str:
                                append(item)
                                event: Event | None = Event(_TOKEN, item) if emit else None
                            else:
                                event = self._item(item)
                            if self._next_check <= len(parts):
                                self._check_before(event if emit else None)
                            if emit and event is not None:
                                self._parked = False
                                delivered = True
                                yield event
                                if self._abort_requested:
                                    raise _Abandon
                                self._last = _now()
                                self._parked = True
                        if pending and pending[-1] is not _END:
                            # The hot loops: a type check and an append per token, a clock read
                            # when events are delivered, one comparison when checks run.
                            # The check-due mark lives in a local: re-read only after a
                            # check or a non-text item (either can move it).
                            checked = self._checks_on
                            if emit and checked:
                                next_check = self._next_check
                                async for item in iterator:
                                    self._parked = False
                                    if type(item) is str:
                                        append(item)
                                        event = Event(_TOKEN, item)
                                    else:
                                        event = self._item(item)
                                        next_check = self._next_check
                                    if next_check <= len(parts):
                                        self._check_before(event)
                                        next_check = self._next_check
                                    if event is not None:
                                        delivered = True
                                        yield event
                                    if self._abort_requested:
                                        raise _Abandon
                                    self._last = _now()
                                    self._parked = True
                            elif emit:
                                async for item in iterator:
                                    self._parked = False
                                    if type(item) is str:
                                        append(item)
                                        delivered = True
                                        yield Event(_TOKEN, item)
                                    else:
                                        event = self._item(item)
                                        if event is not None:
                                            delivered = True
                                            yield event
                                    if self._abort_requested:
                                        raise _Abandon
                                    self._last = _now()
                                    self._parked = True
                            elif checked:
                                # Without events the clock is read only for other items: the
                                # timer tells text progress by the number of parts (_on_timer).
                                next_check = self._next_check
                                async for item in iterator:
                                    if type(item) is str:
                                        append(item)
                                    else:
                                        self._item(item)
                                        self._last = _now()
                                        next_check = self._next_check
                                    if next_check <= len(parts):
                                        self._check()
                                        next_check = self._next_check
                            else:
                                async for item in iterator:
                                    if type(item) is str:
                                        append(item)
                                    else:
                                        self._item(item)
                                        self._last = _now()
                        self._parked = False
                        self._stop_timer()
                        self._iterator = None
                        # Zero output first: it is a transport-level failure that costs only
                        # max_retries, even when a zero_output guardrail rule is also on.
                        if not self._has_output():
                            raise ZeroOutputError(
                                "the stream ended without output"
                                + (" (whitespace only)" if parts else "")
                            )
                        more = self._continues_on_length()
                        if not more:
                            self._finish_checks()
                    except asyncio.CancelledError:
                        self._parked = False
                        self._stop_timer()
                        task = self._task
                        ours = self._cancel_is_ours()
                        if not ours or task is None or task.uncancel() > 0:
                            # The caller cancelled us: close the provider and report an abort.
                            await self._close_stream()
                            self._report_abort("cancel")
                            raise
                        fired = self._take_fired()
                        if fired is None:  # abort() cancelled the provider wait
                            await self._close_stream()
                            self._report_abort("user")
                            raise AbortedError(
                                "the session was aborted",
                                token_count=state.token_count,
                            ) from None
                        error: BaseException = fired
                        self._obs(
                            _OBS.TIMEOUT_TRIGGERED,
                            timeout_type=fired.timeout_type,
                            elapsed_ms=int(fired.elapsed * 1000),
                            configured_ms=int(fired.configured * 1000),
                        )
                        notify("on_timeout", fired.timeout_type, int(fired.elapsed * 1000))
                        await self._close_stream()
                    except _Abandon:
                        self._parked = False
                        self._stop_timer()
                        await self._close_stream()
                        self._report_abort("user")
                        raise AbortedError(
                            "the session was aborted", token_count=state.token_count
                        ) from None
                    except Exception as exc:
                        self._parked = False
                        self._stop_timer()
                        error = exc
                        await self._close_stream()
                    else:
                        self._source = None
                        if self._health is not None:
                            await self._health_end(None)
                        if more:
                            resume = self._length_resume(resume is not None, checkpoint)
                            continue
                        # --- success ------------------------------------------------------------
                        self._account("success")
                        state.completed = True
                        state.ended_at = _now()
                        self.finished = True
                        duration_ms = (
                            int((state.ended_at - (state.started_at or 0.0)) * 1000)
                            if self._observed
                            else 0  # only events carry it
                        )
                        if resume:
                            self._obs(
                                _OBS.RESUME_END,
                                checkpoint=checkpoint,
                                duration_ms=int((state.ended_at - self._attempt_start) * 1000),
                                success=True,
                                overlap_chars=self._overlap_removed,
                            )
                        if network_failures:
                            self._obs(
                                _OBS.NETWORK_RECOVERY,
                                attempt_count=state.attempt,
                                duration_ms=duration_ms,
                            )
                            self._obs(_OBS.CONNECTION_RESTORED, duration_ms=duration_ms)
                        if retry_index > 0 or index > 0:
                            self._obs(
                                _OBS.RETRY_END,
                                attempt=state.attempt,
                                success=True,
                                duration_ms=duration_ms,
                            )
                        if index > 0:
                            self._obs(_OBS.FALLBACK_END, index=index, duration_ms=duration_ms)
                        if self._observed:
                            self._obs(_OBS.FINALIZATION_START)
                        if notifies:
                            notify("on_complete", state)
                        if self._observed:
                            self._obs(_OBS.FINALIZATION_END, duration_ms=0)
                        self._summary("success")
                        if emit:
                            yield Event(
                                EventType.COMPLETE,
                                usage=state.usage,
                                data={
                                    "finish_reason": state.finish_reason,
                                    **usage_summary(state.attempts),
                                },
                            )
                        return

                    # --- failure: decide what happens next ---------------------------------
                    category = self._categorize(error)
                    if self._health is not None:
                        await self._health_end(error, category)
                    self.errors.append(AttemptError(state.attempt, index, error, category))
                    if resume:
                        self._obs(
                            _OBS.RESUME_END,
                            checkpoint=checkpoint,
                            duration_ms=int((_now() - self._attempt_start) * 1000),
                            success=False,
                            overlap_chars=self._overlap_removed,
                        )
                    delivered_text = state.content
                    delivered_tokens = state.token_count
                    will_retry, counted, reason, will_fallback, delay = self._route(
                        error, category, retry_index, index + 1 < n_streams
                    )
                    if will_retry and self._health is not None:
                        will_retry, reason = await self._health_retry(index, reason)
                        will_fallback = (
                            not will_retry
                            and category is not ErrorCategory.INTERNAL
                            and index + 1 < n_streams
                        )
                    if category is ErrorCategory.NETWORK:
                        network_failures += 1
                        code = getattr(error, "code", None)
                        self._obs(
                            _OBS.NETWORK_ERROR,
                            error=repr(error),
                            code=code if isinstance(code, str | int) else None,
                            will_retry=will_retry,
                        )
                        if delivered_tokens > checkpoint_tokens:
                            self._obs(_OBS.CONNECTION_DROPPED, reason=repr(error))
                    notify("on_error", error, will_retry, will_fallback)
                    resume = None
                    if will_retry or will_fallback:
                        resume = self._resume_point(error, category)
                    kept = resume[0] if resume else ""
                    self._account("error", len(kept) - len(state._prefix))
                    if emit:
                        yield Event(
                            EventType.ERROR,
                            error=error,
                            data={
                                "category": category.value,
                                "will_retry": will_retry,
                                "will_fallback": will_fallback,
                                "attempt": state.attempt,
                            },
                        )
                        withdrawn = delivered_text[len(kept) :]
                        if (
                            (delivered or checkpoint)
                            and (will_retry or will_fallback)
                            and withdrawn
                        ):
                            yield Event(
                                EventType.RESET,
                                data={
                                    "withdrawn": withdrawn,
                                    "withdrawn_tokens": delivered_tokens - (resume or ("", 0))[1],
                                    "kept": len(kept),
                                    "reason": reason,
                                },
                            )
                    state._reset_attempt(kept, resume[1] if resume else 0)
                    if will_retry:
                        model, network = self._stream_retries
                        if counted:
                            state.model_retry_count += 1
                            self._stream_retries = (model + 1, network)
                        else:
                            state.network_retry_count += 1
                            self._stream_retries = (model, network + 1)
                        state.total_retries += 1
                        retry_index += 1
                        self._obs(
                            _OBS.RETRY_ATTEMPT,
                            index=retry_index,
                            attempt=state.attempt + 1,
                            reason=reason,
                            counts_toward_limit=counted,
                            is_network=category in (ErrorCategory.NETWORK, ErrorCategory.TRANSIENT),
                            is_model_issue=counted,
                            delay_ms=delay * 1000,
                            **self._failure(error),
                        )
                        notify("on_retry", state.attempt + 1, reason)
                        await self._sleep(delay)
                        if self._abort_requested:
                            raise _Abandon
                        continue
                    if will_fallback:
                        self._obs(
                            _OBS.FALLBACK_START,
                            from_index=index,
                            to_index=index + 1,
                            reason=reason,
                            **self._failure(error),
                        )
                        notify("on_fallback", index + 1, reason)
                        break
                    self._give_up(error, category, reason)
            raise AssertionError("unreachable: every stream ended in success or give-up")
        except _Abandon:
            await self._close_stream()
            self._report_abort("user")
            raise AbortedError("the session was aborted", token_count=state.token_count) from None
        except asyncio.CancelledError:
            if not self._aborted_reported:
                await self._close_stream()
                self._report_abort("cancel")
            raise
        except GeneratorExit:
            # The consumer stopped iterating (break, or the generator was collected).
            if not self.finished:
                self._report_abort("consumer")
            raise
        finally:
            self._stop_timer()
            self._parked = False
            if self._health is not None:
                self._health.release()
            if self._iterator is not None or self._source is not None:
                await self._close_stream()

    async def read_text(self) -> str:
        """Run the session to its end without events (``Result.read()``); return the text.

        A plain session (nobody observes or is notified, no checks, health, hedging, recording
        or length continuation) runs its first attempt here, on a path without the event
        machinery: most requests succeed at once (issue 11, "Session set-up"). Whatever ends
        that attempt other than success hands over to :meth:`run`, which goes on exactly as if
        the attempt had run there.
        """
        opts = self._opts
        if not (
            self._plain
            and opts.guardrails is None
            and opts.drift is None
            and not opts.continuation
            and not opts.continue_on_length
        ):
            async for _ in self.run(False):
                pass
            return self.state.content
        self._begin()
        if self._abort_requested:
            raise AbortedError("the session was aborted before it started")
        state = self.state
        state.attempt = self._attempt_no = 1
        self._clockless = True
        self._attempt_start = state.started_at or _now()
        self._checks_start()
        try:
            self._start_timer()
            source = self._call_factory(0, _FIRST_CONTEXT if opts.takes_ctx[0] else None)
            if type(source) is _ASYNC_GENERATOR:
                iterator = self._adopt(source)
            else:
                iterator = await self._open_source(source)
            self._parked = True
            parts = state._parts
            append = parts.append
            try:
                first = await iterator.__anext__()
            except StopAsyncIteration:
                first = _END
            self._last = _now()
            if first is not _END:
                self._first_item()
                if type(first) is str:
                    append(first)
                else:
                    self._item(first)
                async for item in iterator:
                    if type(item) is str:
                        append(item)
                    else:
                        self._item(item)
                        self._last = _now()
            self._parked = False
            self._stop_timer()
            self._iterator = None
            if not self._has_output():
                raise ZeroOutputError(
                    "the stream ended without output" + (" (whitespace only)" if parts else "")
                )
        except BaseException as exc:  # handed to run(), which decides as for any attempt
            self._parked = False
            async for _ in self.run(False, exc):
                pass
            return state.content
        self._source = None
        if state.usage is None:
            # _account("success") for an attempt without provider usage, inline: no overlap
            # was removed and nothing withdrawn, so every character is kept.
            _ = state.content  # joined once here, returned below
            chars = len(state._joined)
            paid = -(-chars // CHARS_PER_TOKEN)
            state._usage_rows.append((1, 0, "success", paid, paid, None, True, chars))
        else:
            self._account("success")
        state.completed = True
        state.ended_at = _now()
        self.finished = True
        return state.content
