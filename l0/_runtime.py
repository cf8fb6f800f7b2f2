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
import inspect
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from l0._callbacks import Notifier
from l0._dispatch import HookTable, hook_table
from l0.adapters import install_hint
from l0.errors import (
    AbortedError,
    AdapterNotFoundError,
    AttemptError,
    DriftError,
    ErrorContext,
    GuardrailError,
    InitialTokenTimeoutError,
    InterTokenTimeoutError,
    InvalidStreamError,
    L0Error,
    RetryExhaustedError,
    StreamTimeoutError,
    ToolCallError,
    TruncatedError,
    ZeroOutputError,
    _builtin_category,
    attach_context,
    get_retry_after,
)
from l0.events import ObservabilityEvent, ObservabilityEventType, uuid7
from l0.plugins import L0PluginManager
from l0.retry import Retry, compute_backoff
from l0.timeout import Timeout
from l0.types import (
    Adapter,
    AttemptContext,
    ErrorCategory,
    Event,
    EventType,
    GuardrailViolation,
    RetryDecision,
    State,
)

log = logging.getLogger("l0")

_now = time.monotonic
_OBS = ObservabilityEventType
_TOKEN = EventType.TOKEN
_RESET_EVENT = EventType.RESET
_INF = float("inf")
_END: Any = object()
DEFAULT_INTERVALS: dict[str, int] = {"guardrails": 5, "drift": 10, "checkpoint": 10}
"""Tokens between guardrail checks, drift checks and checkpoints unless ``check_intervals``
says otherwise. Checks look at the text added since the previous check, so their total cost
grows linearly with the output whatever the interval."""
DEFAULT_MAX_OVERLAP = 200
"""Most characters held back at a continuation seam while deciding what the model repeated."""
_CHECKPOINT_TEXT_LIMIT = 65536
_CLOSE_GRACE = 2.0
"""Seconds allowed for closing an abandoned provider stream before L0 stops waiting on it."""

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


def _overlap(checkpoint: str, text: str, limit: int) -> int:
    """Length of the longest checkpoint suffix that ``text`` starts with, on word boundaries.

    At least two characters, not only whitespace, and the cut must not split a word on either
    side ("the" + "he said" is not an overlap).
    """
    upper = min(len(checkpoint), len(text), limit)
    for k in range(upper, 1, -1):
        if not checkpoint.endswith(text[:k]):
            continue
        starts_clean = k == len(checkpoint) or not (
            checkpoint[-k - 1].isalnum() and text[0].isalnum()
        )
        ends_clean = k == len(text) or not (text[k - 1].isalnum() and text[k].isalnum())
        if starts_clean and ends_clean and text[:k].strip():
            return k
    return 0


def _takes_context(factory: Callable[..., Any]) -> bool:
    """True when ``factory`` has a required positional parameter (it wants the attempt context).

    ``functools.partial(sdk_call, model=...)`` and ``*args`` callables get no argument, so
    wrapping an SDK function keeps working.
    """
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
        "adapter",
        "build_continuation_prompt",
        "callbacks",
        "context",
        "continuation",
        "drift",
        "factories",
        "guardrails",
        "intervals",
        "max_overlap",
        "meta",
        "plugins",
        "record",
        "remove_overlap",
        "retry",
        "retry_on_length",
        "rng",
        "session_id",
        "takes_ctx",
        "timeout",
    )

    def __init__(
        self,
        *,
        factories: Sequence[Callable[..., Any]],
        retry: Retry,
        timeout: Timeout,
        adapter: Adapter | None,
        plugins: L0PluginManager,
        callbacks: Mapping[str, Callable[..., Any]],
        context: Mapping[str, Any],
        meta: Mapping[str, Any],
        session_id: str | None,
        seed: int | None,
        retry_on_length: bool = False,
        guardrails: Any = None,
        drift: Any = None,
        intervals: Mapping[str, int] | None = None,
        continuation: bool = False,
        build_continuation_prompt: Callable[[str], str] | None = None,
        remove_overlap: bool = True,
        max_overlap: int = DEFAULT_MAX_OVERLAP,
        record: str | None = None,
    ) -> None:
        self.factories = tuple(factories)
        self.takes_ctx = tuple(_takes_context(f) for f in self.factories)
        self.retry = retry
        self.timeout = timeout
        self.adapter = adapter
        self.plugins = plugins
        self.callbacks = dict(callbacks)
        self.context = context
        self.meta = meta
        self.session_id = session_id
        self.rng = random.Random(seed if seed is not None else retry.seed)
        self.retry_on_length = retry_on_length
        self.guardrails = guardrails
        self.drift = drift
        self.intervals = {**DEFAULT_INTERVALS, **(intervals or {})}
        self.continuation = continuation
        self.build_continuation_prompt = build_continuation_prompt
        self.remove_overlap = remove_overlap
        self.max_overlap = max_overlap
        self.record = record


class _Abandon(Exception):
    """Internal: the attempt ended because of a timeout timer or an abort request."""


class Session:
    """Runs one ``l0.run`` call. Created by :func:`l0.run`; used through :class:`l0.Result`."""

    __slots__ = (
        "_abort_requested",
        "_aborted_reported",
        "_attempt_start",
        "_checked",
        "_checkpoints",
        "_checks_on",
        "_closing",
        "_drift_run",
        "_fired",
        "_guard_run",
        "_handle",
        "_interval",
        "_iterator",
        "_last",
        "_loop",
        "_next_check",
        "_next_checkpoint",
        "_notifier",
        "_notify_after",
        "_observed",
        "_opts",
        "_overlap_removed",
        "_parked",
        "_raw",
        "_raw_list",
        "_recording",
        "_source",
        "_start_ts",
        "_started",
        "_table",
        "_task",
        "_tool_starts",
        "_wants_checkpoints",
        "errors",
        "finished",
        "state",
        "stream_id",
    )

    def __init__(self, opts: _Options) -> None:
        self._opts = opts
        self.state = State()
        self.errors: list[AttemptError] = []
        self.stream_id = uuid7()
        self.finished = False
        self._table: HookTable = hook_table(opts.plugins)
        self._recording: Any = None
        if opts.record is not None:
            from l0.record import SessionRecording

            self._recording = SessionRecording(
                opts.record, self.stream_id, opts.session_id or self.stream_id
            )
        self._observed = (
            bool(self._table.export) or "on_event" in opts.callbacks or self._recording is not None
        )
        self._notifier = Notifier()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._fired: StreamTimeoutError | None = None
        self._parked = False
        self._last = 0.0
        self._attempt_start = 0.0
        self._abort_requested = False
        self._aborted_reported = False
        self._iterator: Any = None
        self._source: Any = None
        self._closing: asyncio.Task[None] | None = None
        self._raw: list[Any] = []
        self._raw_list: list[Any] | None = None
        self._started = False
        self._guard_run: Any = None
        self._drift_run: Any = None
        self._checked = 0
        self._checks_on = False
        self._interval = 0
        self._next_check = 1 << 62
        self._next_checkpoint = 0
        self._overlap_removed = 0
        self._tool_starts: dict[str, float] = {}
        self._checkpoints = 0
        self._notify_after = 0
        self._start_ts = 0.0
        self._wants_checkpoints = (
            "on_checkpoint" in opts.callbacks or "l0_on_checkpoint" in self._table.lifecycle
        )

    # --- notifications -------------------------------------------------------------------------

    def _notify(self, name: str, *args: Any) -> None:
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
        opts = self._opts
        event = ObservabilityEvent(
            type=kind,
            ts=time.time_ns() / 1_000_000,
            stream_id=self.stream_id,
            session_id=opts.session_id or self.stream_id,
            data=MappingProxyType(data),
            context=opts.context,
            meta=opts.meta,
        )
        for export in self._table.export:
            try:
                export(event)
            except Exception:
                log.exception("l0: exporter %r raised; the stream goes on", export)
        on_event = opts.callbacks.get("on_event")
        if on_event is not None:
            self._notifier.call("on_event", on_event, (event,))
        recording = self._recording
        if recording is not None:
            recording.obs(event)
            if kind is _OBS.SESSION_END:
                recording.end()

    # --- timers --------------------------------------------------------------------------------

    def _arm(self, when: float) -> None:
        loop = self._loop
        assert loop is not None
        self._handle = loop.call_at(when, self._on_timer)

    def _start_timer(self) -> None:
        timeout = self._opts.timeout
        limit = timeout.initial_token if timeout.initial_token is not None else timeout.inter_token
        if limit is None:
            return
        self._arm(self._attempt_start + limit)
        self._obs(
            _OBS.TIMEOUT_START,
            timeout_type="initial" if timeout.initial_token is not None else "inter",
            configured_ms=int(limit * 1000),
        )

    def _stop_timer(self) -> None:
        handle = self._handle
        if handle is not None:
            handle.cancel()
            self._handle = None

    def _on_timer(self) -> None:
        self._handle = None
        timeout = self._opts.timeout
        now = _now()
        last = self._last
        if last == 0.0:
            limit = timeout.initial_token
            kind = "initial"
            since = self._attempt_start
        else:
            limit = timeout.inter_token
            kind = "inter"
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
        self._fired = error_type(
            f"no {'first token' if kind == 'initial' else 'token'} for {elapsed:.3f}s "
            f"(Timeout.{kind}_token={limit}s)",
            elapsed=elapsed,
            configured=limit,
        )
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

    # --- the run -------------------------------------------------------------------------------

    def _begin(self) -> None:
        if self._started:
            raise RuntimeError("this L0 result is already being consumed; iterate or read it once")
        self._started = True
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        state = self.state
        state.started_at = _now()
        self._start_ts = time.time_ns() / 1_000_000
        opts = self._opts
        self._obs(
            _OBS.SESSION_START,
            attempt=1,
            is_retry=False,
            is_fallback=False,
            stream_count=len(opts.factories),
        )

    def _categorize(self, error: BaseException) -> ErrorCategory:
        try:
            answer = self._opts.plugins.hooks.categorize_error(error)
            if isinstance(answer, ErrorCategory):
                return answer
        except Exception:
            log.exception("l0: a categorize plugin raised on %r; using builtin rules", type(error))
        try:
            return _builtin_category(error)
        except Exception:  # pragma: no cover - written not to raise
            return ErrorCategory.MODEL

    def _decide(self, error: BaseException, category: ErrorCategory) -> RetryDecision:
        try:
            answer = self._opts.plugins.hooks.retry_decision(error, category, self.state.snapshot())
            if isinstance(answer, RetryDecision):
                return answer
            log.warning("l0: retry decision plugins returned %r; not retrying", answer)
        except Exception as exc:
            # A plugin bug must not look like a provider failure: name it in the reason that
            # on_error, RETRY_GIVE_UP and RetryExhaustedError carry.
            log.exception("l0: a retry decision plugin raised; not retrying")
            return RetryDecision(retry=False, reason=f"not retrying: {exc}")
        return RetryDecision(retry=False, reason="no valid retry decision")

    def _backoff(self, retry_index: int, error: BaseException) -> float:
        opts = self._opts
        try:
            delay = opts.plugins.hooks.backoff_delay(retry_index, opts.retry, error, opts.rng)
        except Exception:
            log.exception("l0: a backoff plugin raised; using the builtin formula")
            delay = None
        if delay is None:
            delay = compute_backoff(retry_index, opts.retry, opts.rng)
        if delay is None:
            from l0.errors import ConfigError

            raise ConfigError(
                f"Retry(strategy={opts.retry.strategy!r}): no plugin computes this strategy; "
                "choose one of exponential, linear, fixed, full-jitter, fixed-jitter"
            )
        return max(0.0, min(float(delay), opts.retry.max_delay))

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

    def tool_started(self, tool_call_id: str, tool_name: str) -> None:
        """Report that the application started executing a tool call."""
        self._tool_starts[tool_call_id] = _now()
        self._obs(_OBS.TOOL_START, tool_call_id=tool_call_id, tool_name=tool_name)

    def tool_finished(
        self, tool_call_id: str, *, result: Any = None, error: BaseException | str | None = None
    ) -> None:
        """Report the outcome of a tool call the application executed."""
        started = self._tool_starts.pop(tool_call_id, None)
        duration_ms = int((_now() - started) * 1000) if started is not None else None
        if error is None:
            self._obs(
                _OBS.TOOL_RESULT, tool_call_id=tool_call_id, result=result, duration_ms=duration_ms
            )
        else:
            self._obs(
                _OBS.TOOL_ERROR,
                tool_call_id=tool_call_id,
                error=error if isinstance(error, str) else repr(error),
                duration_ms=duration_ms,
            )
        status = "success" if error is None else "error"
        self._obs(_OBS.TOOL_COMPLETED, tool_call_id=tool_call_id, status=status)

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
        timeout = self._opts.timeout
        # The initial-token timer is set far out; switch to the (usually shorter) gap limit.
        self._stop_timer()
        if timeout.inter_token is not None:
            self._arm(self._last + timeout.inter_token)
        self._obs(
            _OBS.STREAM_READY,
            attempt=state.attempt,
            ttft_ms=int((self._last - self._attempt_start) * 1000),
        )
        if timeout.inter_token is not None:
            self._obs(
                _OBS.TIMEOUT_RESET,
                timeout_type="inter",
                configured_ms=int(timeout.inter_token * 1000),
                token_index=0,
            )

    async def _open(self, index: int, ctx: AttemptContext) -> AsyncIterator[Any]:
        """Call the factory, await it, pick an adapter; all under the initial-token timer."""
        opts = self._opts
        factory = opts.factories[index]
        try:
            source = factory(ctx) if opts.takes_ctx[index] else factory()
        except Exception as exc:
            # The factory itself failed before any I/O: most often a bug, but SDKs that
            # connect eagerly raise their own (categorised) errors here too.
            raise exc from None
        if inspect.isawaitable(source):
            self._parked = True
            try:
                source = await source
            finally:
                self._parked = False
        self._source = source
        adapter = self._pick_adapter(source)
        self._obs(
            _OBS.ADAPTER_WRAP_START, stream_type=type(source).__name__, adapter_id=adapter.name
        )
        self._obs(_OBS.ADAPTER_DETECTED, adapter_id=adapter.name)
        iterator = adapter.wrap(source)
        if not hasattr(iterator, "__anext__"):
            raise InvalidStreamError(
                f"adapter {adapter.name!r} returned {type(iterator).__name__}, "
                "not an async iterator"
            )
        self._iterator = iterator
        # Adapters may keep every provider chunk (including those that yield no event) in a
        # ``raw_chunks`` list on their iterator; result.raw() then returns exactly those.
        raw_list = getattr(iterator, "raw_chunks", None)
        self._raw_list = raw_list if isinstance(raw_list, list) else None
        self._obs(_OBS.ADAPTER_WRAP_END, adapter_id=adapter.name)
        return iterator

    def _pick_adapter(self, source: Any) -> Adapter:
        opts = self._opts
        if opts.adapter is not None:
            return opts.adapter
        from l0.adapters import Adapters

        adapter = Adapters.detect(source, opts.plugins)
        if adapter is not None:
            return adapter
        tried = ", ".join(Adapters.names(opts.plugins)) or "none"
        raise AdapterNotFoundError(
            f"the stream factory returned {type(source).__module__}.{type(source).__qualname__}, "
            f"which no adapter can read (tried: {tried}); {install_hint(source)}."
        )

    def _item(self, obj: Any) -> Event | None:
        """Handle a non-``str`` item; return the event to hand to the consumer, if any."""
        item: Event = obj
        if type(item) is not Event:
            if isinstance(item, Event):
                item = Event(*item)
            else:
                raise InvalidStreamError(
                    f"the stream yielded {type(item).__module__}.{type(item).__qualname__}; "
                    f"L0 accepts str tokens and l0.Event items: {install_hint(item)}."
                )
        if item.raw is not None:
            self._raw.append(item.raw)
        kind = item.type
        state = self.state
        if kind is _TOKEN:
            if item.text:
                state._parts.append(item.text)
            return item
        if kind is EventType.TOOL_CALL:
            data = item.data if isinstance(item.data, Mapping) else {}
            call = dict(data)
            state.tool_calls.append(call)
            args = call.get("arguments")
            if isinstance(args, str):
                import orjson

                try:
                    args = orjson.loads(args) if args.strip() else {}
                except orjson.JSONDecodeError as exc:
                    raise ToolCallError(
                        f"tool call {call.get('name')!r} (id {call.get('id')!r}) has arguments "
                        f"that are not valid JSON ({exc}): {args[:200]!r}"
                    ) from None
            if not isinstance(args, dict):
                raise ToolCallError(
                    f"tool call {call.get('name')!r} (id {call.get('id')!r}) has arguments that "
                    f"are not a JSON object: {args!r:.200}"
                )
            name, call_id = str(call.get("name", "")), str(call.get("id", ""))
            self._obs(_OBS.TOOL_REQUESTED, tool_name=name, tool_call_id=call_id, arguments=args)
            self._notify("on_tool_call", name, call_id, args)
            return item
        if kind is EventType.COMPLETE:
            if item.usage is not None:
                state.usage = item.usage
            if isinstance(item.data, Mapping) and "finish_reason" in item.data:
                state.finish_reason = item.data["finish_reason"]
                if state.finish_reason == "length" and self._opts.retry_on_length:
                    raise TruncatedError(
                        "the answer stopped at the token limit (finish_reason='length')"
                    )
            return None
        if kind is EventType.ERROR:
            data = item.data if isinstance(item.data, Mapping) else {}
            if data.get("will_retry") or data.get("will_fallback"):
                # A stream that recovers by itself (a nested l0.Result): let it; the consumer
                # still sees the error, and the RESET that may follow is applied below.
                return item
            error = item.error
            if error is None:
                error = L0Error(f"the stream reported an error: {item.data!r}")
            raise error
        if kind is _RESET_EVENT:
            data = item.data if isinstance(item.data, Mapping) else {}
            withdrawn = data.get("withdrawn")
            if isinstance(withdrawn, str) and withdrawn:
                self._withdraw(withdrawn)
        return item

    def _withdraw(self, withdrawn: str) -> None:
        """Take back text a nested stream withdrew, so ``content`` never holds it twice."""
        state = self.state
        state._withdraw(len(withdrawn))
        if self._checks_on:
            # Incremental checks cannot un-see text: restart them over what is left.
            emit = self._emit_fn if self._observed else None
            opts = self._opts
            if self._guard_run is not None:
                self._guard_run = opts.guardrails.start(emit)
            if self._drift_run is not None:
                self._drift_run = opts.drift.start(emit)
            self._checked = 0
            self._next_check = min(self._next_check, len(state._parts) + self._interval)

    def _has_output(self) -> bool:
        state = self.state
        if state.tool_calls:
            return True
        return any(part and not part.isspace() for part in state._parts) or bool(
            state._prefix.strip()
        )

    async def run(self, emit: bool) -> AsyncIterator[Event]:
        """The session as an async generator of consumer events.

        With ``emit=False`` (``read()``) tokens are only accumulated, never wrapped in events.
        """
        self._begin()
        opts = self._opts
        state = self.state
        notify = self._notify
        n_streams = len(opts.factories)
        resume: tuple[str, int] | None = None
        network_failures = 0
        try:
            if self._abort_requested:
                raise AbortedError("the session was aborted before it started")
            for index in range(n_streams):
                state.fallback_index = index
                state.model_retry_count = 0
                state.network_retry_count = 0
                retry_index = 0
                if index > 0:
                    self._obs(_OBS.FALLBACK_MODEL_SELECTED, index=index)
                while True:
                    state.attempt += 1
                    checkpoint, checkpoint_tokens = resume or ("", 0)
                    prompt = self._begin_resume(checkpoint, checkpoint_tokens) if resume else None
                    ctx = AttemptContext(
                        attempt=state.attempt,
                        fallback_index=index,
                        is_retry=retry_index > 0,
                        is_fallback=index > 0,
                        checkpoint=checkpoint,
                        continuation_prompt=prompt,
                    )
                    if retry_index > 0:
                        self._obs(
                            _OBS.RETRY_START,
                            attempt=state.attempt,
                            max_attempts=opts.retry.max_retries + 1,
                        )
                    notify("on_start", state.attempt, retry_index > 0, index > 0)
                    state._reset_attempt(checkpoint, checkpoint_tokens)
                    self._raw = []
                    self._raw_list = None
                    self._last = 0.0
                    self._attempt_start = _now()
                    self._fired = None
                    self._checks_start()
                    delivered = False
                    try:
                        self._obs(_OBS.STREAM_INIT, attempt=ctx.attempt, fallback_index=index)
                        self._start_timer()
                        iterator = await self._open(index, ctx)
                        parts = state._parts
                        append = parts.append
                        self._parked = True
                        first = await anext(iterator, _END)
                        self._last = _now()
                        pending: list[Any] = []
                        if first is not _END:
                            self._first_item()
                            if resume and opts.remove_overlap:
                                pending = await self._trim_overlap(iterator, first)
                            else:
                                pending = [first]
                        for item in pending:
                            if item is _END:
                                break
                            if type(item) is str:
                                append(item)
                                event: Event | None = Event(_TOKEN, item)
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
                            # The hot loops: a type check, an append and a clock read per token
                            # (plus one comparison when guardrails, drift or checkpoints run).
                            checked = self._checks_on
                            if emit and checked:
                                async for item in iterator:
                                    self._parked = False
                                    if type(item) is str:
                                        append(item)
                                        event = Event(_TOKEN, item)
                                    else:
                                        event = self._item(item)
                                    if self._next_check <= len(parts):
                                        self._check_before(event)
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
                                async for item in iterator:
                                    if type(item) is str:
                                        append(item)
                                    else:
                                        self._item(item)
                                    if self._next_check <= len(parts):
                                        self._check()
                                    self._last = _now()
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
                        # --- success ------------------------------------------------------------
                        state.completed = True
                        state.ended_at = _now()
                        self.finished = True
                        duration_ms = int((state.ended_at - (state.started_at or 0.0)) * 1000)
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
                        self._obs(_OBS.FINALIZATION_START)
                        notify("on_complete", state)
                        self._obs(_OBS.FINALIZATION_END, duration_ms=0)
                        self._summary("success")
                        if emit:
                            yield Event(
                                EventType.COMPLETE,
                                usage=state.usage,
                                data={"finish_reason": state.finish_reason},
                            )
                        return

                    # --- failure: decide what happens next ---------------------------------
                    category = self._categorize(error)
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
                    will_retry, counted, reason = self._will_retry(error, category)
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
                        if counted:
                            state.model_retry_count += 1
                        else:
                            state.network_retry_count += 1
                        state.total_retries += 1
                        delay = self._backoff(retry_index, error)
                        retry_after = get_retry_after(error)
                        if retry_after is not None:
                            delay = max(delay, retry_after)
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
            if self._iterator is not None or self._source is not None:
                await self._close_stream()

    # --- guardrails, drift, checkpoints (every few tokens, never per token) ----------------------

    def _checks_start(self) -> None:
        opts = self._opts
        emit = self._emit_fn if self._observed else None
        self._guard_run = opts.guardrails.start(emit) if opts.guardrails is not None else None
        self._drift_run = opts.drift.start(emit) if opts.drift is not None else None
        self._checked = 0
        self._overlap_removed = 0
        intervals = []
        if self._guard_run is not None:
            intervals.append(opts.intervals["guardrails"])
        if self._drift_run is not None:
            intervals.append(opts.intervals["drift"])
        if opts.continuation:
            intervals.append(opts.intervals["checkpoint"])
        self._checks_on = bool(intervals)
        self._interval = min(intervals) if intervals else 0
        self._next_check = self._interval if intervals else 1 << 62
        self._next_checkpoint = opts.intervals["checkpoint"]
        self._notify_after = 0

    def _emit_fn(self, kind: str, **fields: Any) -> None:
        self._obs(ObservabilityEventType(kind), **fields)

    def _check(self) -> None:
        """Run guardrails/drift over the text since the last check; save a checkpoint."""
        state = self.state
        parts = state._parts
        n = len(parts)
        self._next_check = n + self._interval
        if self._guard_run is not None or self._drift_run is not None:
            delta = "".join(parts[self._checked :])
        self._checked = n
        if self._guard_run is not None:
            violations = self._guard_run.feed(delta, state)
            if violations:
                self._handle_violations(violations)
        if self._drift_run is not None:
            result = self._drift_run.feed(delta)
            if result is not None and result.detected:
                self._handle_drift(result)
        if self._opts.continuation and n >= self._next_checkpoint:
            self._next_checkpoint = n + self._opts.intervals["checkpoint"]
            state._checkpoint_at = n
            self._checkpoints += 1
            if (self._observed or self._wants_checkpoints) and n >= self._notify_after:
                text = state.checkpoint
                # Each notification copies the whole checkpoint; past 64 KB they are thinned to
                # one per 50% growth so a very long answer still costs linear time overall.
                if len(text) > _CHECKPOINT_TEXT_LIMIT:
                    self._notify_after = n + n // 2
                self._obs(_OBS.CHECKPOINT_SAVED, checkpoint=text, token_count=state.token_count)
                self._notify("on_checkpoint", text, state.token_count)

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
        if not self._checks_on:
            return
        state = self.state
        if self._checked < len(state._parts):
            self._next_check = 0
            self._check()
        if self._guard_run is not None:
            violations = self._guard_run.finish(state)
            if violations:
                self._handle_violations(violations)
        if self._drift_run is not None:
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

    # --- continuation ----------------------------------------------------------------------------

    def _resume_point(
        self, error: BaseException, category: ErrorCategory
    ) -> tuple[str, int] | None:
        """The validated text the next attempt continues from, or None to start over."""
        opts = self._opts
        if not opts.continuation or category in (ErrorCategory.FATAL, ErrorCategory.INTERNAL):
            return None
        state = self.state
        candidates: list[tuple[str, int]] = []
        if category is not ErrorCategory.CONTENT:
            # The tokens were received intact; only the transport failed, so keep them all.
            candidates.append((state.content, state.token_count))
        candidates.append((state.checkpoint, state._prefix_tokens + state._checkpoint_at))
        for text, tokens in candidates:
            if not text.strip():
                continue
            if self._checkpoint_is_valid(text):
                return text, tokens
        return None

    def _checkpoint_is_valid(self, text: str) -> bool:
        opts = self._opts
        if opts.guardrails is not None:
            for violation in opts.guardrails.validate(text):
                if violation.severity != "warning" or not violation.recoverable:
                    return False
        if opts.drift is not None:
            result = opts.drift.validate(text)
            if result is not None and result.detected:
                return False
        return True

    def _begin_resume(self, checkpoint: str, tokens: int) -> str | None:
        state = self.state
        state.resumed = True
        state.resume_point = checkpoint
        state.resume_from = len(checkpoint)
        if self._observed:
            import hashlib

            digest = hashlib.sha256(checkpoint.encode()).hexdigest()[:16]
            self._obs(
                _OBS.RESUME_START, checkpoint=checkpoint, state_hash=digest, token_count=tokens
            )
        self._notify("on_resume", checkpoint, tokens)
        builder = self._opts.build_continuation_prompt
        if builder is None:
            return None
        prompt = builder(checkpoint)
        if not isinstance(prompt, str):
            raise TypeError(
                f"build_continuation_prompt returned {type(prompt).__name__}; expected str"
            )
        return prompt

    async def _trim_overlap(self, iterator: AsyncIterator[Any], first: Any) -> list[Any]:
        """Hold the first tokens of a continuation until the repeated seam can be cut.

        Models asked to continue often repeat the last words of the checkpoint. Tokens are
        held while everything received so far still occurs in the checkpoint's tail (so the
        repetition may go on), at most ``max_overlap`` characters; then the longest
        checkpoint suffix that the new text starts with, aligned to word boundaries, is cut.
        """
        checkpoint = self.state._prefix
        limit = self._opts.max_overlap
        tail = checkpoint[-limit:]
        held: list[str] = []
        text = ""
        item = first
        while True:
            if type(item) is not str:
                return [*self._cut(held, text, checkpoint), item]
            held.append(item)
            text += item
            if len(text) >= limit or text not in tail:
                return self._cut(held, text, checkpoint)
            item = await anext(iterator, _END)
            self._last = _now()
            if item is _END:
                return [*self._cut(held, text, checkpoint), _END]

    def _cut(self, held: list[str], text: str, checkpoint: str) -> list[Any]:
        k = _overlap(checkpoint, text, self._opts.max_overlap)
        self._overlap_removed = k
        if not k:
            return list(held)
        out: list[Any] = []
        drop = k
        for token in held:
            if drop >= len(token):
                drop -= len(token)
                continue
            out.append(token[drop:])
            drop = 0
        return out

    def _will_retry(self, error: BaseException, category: ErrorCategory) -> tuple[bool, bool, str]:
        if self._abort_requested:
            return False, False, "aborted"
        if category is ErrorCategory.INTERNAL:
            return False, False, "internal error"
        decision = self._decide(error, category)
        reason = decision.reason or category.value
        if not decision.retry:
            return False, False, reason
        state = self.state
        policy = self._opts.retry
        counted = decision.counts_toward_attempts
        if counted and state.model_retry_count >= policy.attempts:
            return False, counted, f"{reason}; Retry.attempts={policy.attempts} used up"
        if state.model_retry_count + state.network_retry_count >= policy.max_retries:
            return False, counted, f"{reason}; Retry.max_retries={policy.max_retries} used up"
        retry_after = get_retry_after(error)
        if retry_after is not None and retry_after > policy.max_retry_after:
            return (
                False,
                counted,
                f"{reason}; Retry-After {retry_after:.0f}s exceeds "
                f"Retry.max_retry_after={policy.max_retry_after}s",
            )
        return True, counted, reason

    def _summary(self, status: str) -> None:
        if not self._observed:
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
        )
        self._obs(_OBS.SESSION_END, status=status)

    def _give_up(self, error: BaseException, category: ErrorCategory, reason: str) -> None:
        state = self.state
        state.ended_at = _now()
        state.error = error
        self.finished = True
        self._obs(
            _OBS.RETRY_GIVE_UP,
            attempts=state.attempt,
            last_error=repr(error),
            category=category.value,
            reason=reason,
        )
        self._summary("error")
        if category in (ErrorCategory.FATAL, ErrorCategory.INTERNAL) or not isinstance(
            error, Exception
        ):
            attach_context(error, ErrorContext(category, list(self.errors), state.snapshot()))
            raise error
        raise RetryExhaustedError(
            f"gave up after {state.attempt} attempt(s) over {state.fallback_index + 1} "
            f"stream(s): {reason}; last error: {type(error).__name__}: {error}",
            last_error=error,
            errors=self.errors,
            state=state.snapshot(),
        ) from error

    async def wait_callbacks(self) -> None:
        """Wait for queued callbacks of this session to finish (and its record to be on disk)."""
        await self._notifier.wait()
        if self._recording is not None:
            await asyncio.to_thread(self._recording.flush)
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
