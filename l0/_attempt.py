"""Opening an attempt's stream and turning provider items into consumer events."""

from __future__ import annotations

import inspect
import types
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from l0._session_base import _END, _OBS, _RESET_EVENT, _TOKEN, SessionBase, _now
from l0.adapters import Adapters, install_hint
from l0.errors import (
    AdapterNotFoundError,
    InvalidStreamError,
    L0Error,
    ToolCallError,
    TruncatedError,
)
from l0.types import (
    Adapter,
    AttemptContext,
    AttemptUsage,
    Event,
    EventType,
)

_ASYNC_GENERATOR = types.AsyncGeneratorType
"""What most factories return: never awaitable, so ``inspect.isawaitable`` is skipped."""


def _raw_chunks_of(iterator: object) -> Sequence[Any] | None:
    """The provider chunks an adapter keeps on its iterator, for ``result.raw()``.

    Adapters may keep every provider chunk (including those that yield no event) in a
    ``raw_chunks`` sequence; one that builds the chunk objects on demand counts too.
    """
    raw = getattr(iterator, "raw_chunks", None)
    if raw is None:  # the common case; an ABC isinstance check is not free
        return None
    return raw if isinstance(raw, Sequence) and not isinstance(raw, str) else None


class AttemptMixin(SessionBase):
    """Factory call, adapter choice, non-text items, withdrawn text, tool-call reports."""

    __slots__ = ()

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

    async def _open_first(
        self, index: int, ctx: AttemptContext | None, n_streams: int
    ) -> tuple[AsyncIterator[Any], Any]:
        """Open the attempt and take its first item; with ``hedge_after``, hedge a late one.

        The hedge is the next fallback (the same stream when there is none), run as an attempt
        of its own. Both are contenders of one :class:`l0._first_token.Contest` (the core of
        the streaming race too): the first to deliver an item wins, the other is closed at once.
        """
        hedge_after = self._opts.hedge_after
        if hedge_after is None:
            iterator = await self._open(index, ctx)
            self._parked = True
            return iterator, await anext(iterator, _END)
        from l0._first_token import Contest, close_quietly

        assert ctx is not None  # made for every attempt of a hedging session
        state = self.state
        hedge_index = index + 1 if index + 1 < n_streams else index
        attempts = [state.attempt, 0]
        sources: list[Any] = [None, None]

        async def primary() -> AsyncIterator[Any]:
            iterator = await self._open(index, ctx, own=True, park=False)
            sources[0] = self._source
            return iterator

        async def hedge() -> AsyncIterator[Any]:
            hedge_ctx = replace(
                ctx,
                attempt=attempts[1],
                fallback_index=hedge_index,
                is_fallback=hedge_index > 0,
                report_continuation=None,
            )
            iterator = await self._open(hedge_index, hedge_ctx, own=False, park=False)
            sources[1] = self._hedge_source
            return iterator

        async def close_primary(iterator: AsyncIterator[Any] | None) -> None:
            await close_quietly(iterator, sources[0])

        async def close_hedge(iterator: AsyncIterator[Any] | None) -> None:
            await close_quietly(iterator, sources[1])

        def started() -> None:
            state.attempt += 1
            attempts[1] = state.attempt
            self._obs(
                _OBS.HEDGE_START,
                attempt=state.attempt,
                fallback_index=hedge_index,
                after_ms=int(hedge_after * 1000),
            )

        # A primary that fails before the hedge starts is a plain failure of this attempt.
        contest: Contest[Any] = Contest(idle="stop")
        contest.add(primary, close=close_primary)
        contest.add(hedge, delay=hedge_after, close=close_hedge, on_start=started)
        self._parked = True
        won = await contest.decide()
        if won is None:
            errors = contest.errors
            if 0 not in contest.ended:
                raise errors[0] if 0 in errors else next(iter(errors.values()))
            # The primary ended without an item: a zero-output attempt, as without a hedge.
            winner, iterator, first = 0, self._iterator, _END
        else:
            winner, iterator, first = won.index, won.iterator, won.head[0]
        if len(contest.started) > 1:
            loser = 1 - winner
            state.attempts.append(
                AttemptUsage(
                    attempt=attempts[loser],
                    fallback_index=(index, hedge_index)[loser],
                    outcome="hedge_lost",
                    completion_tokens=0,
                    kept_tokens=0,
                    prompt_tokens=None,
                    estimated=True,
                    chars=0,
                )
            )
            if winner == 1:
                # The contest closed the primary; this also closes what a primary cut short
                # while opening left in the session's fields.
                await close_quietly(self._iterator, self._source)
                self._source, self._iterator = sources[1], iterator
                self._raw_list = _raw_chunks_of(iterator)
                state.fallback_index = hedge_index
                self._attempt_no = attempts[1]
                self._hedged_to = hedge_index if hedge_index != index else 0
            self._obs(
                _OBS.HEDGE_END,
                winner="hedge" if winner == 1 else "primary",
                winner_attempt=attempts[winner],
                loser_attempt=attempts[loser],
            )
        return iterator, first

    async def _open(
        self, index: int, ctx: AttemptContext | None, *, own: bool = True, park: bool = True
    ) -> AsyncIterator[Any]:
        """Call the factory, await it, pick an adapter; all under the initial-token timer.

        ``own=False`` (a hedge) leaves the session's stream fields alone and closes what it
        opened if it fails; ``park=False`` leaves the timer's parked flag to the caller.
        """
        return await self._open_source(self._call_factory(index, ctx), own=own, park=park)

    def _call_factory(self, index: int, ctx: AttemptContext | None) -> Any:
        opts = self._opts
        factory = opts.factories[index]
        try:
            return factory(ctx) if opts.takes_ctx[index] else factory()
        except Exception as exc:
            # The factory itself failed before any I/O: most often a bug, but SDKs that
            # connect eagerly raise their own (categorised) errors here too.
            raise exc from None

    async def _open_source(
        self, source: Any, *, own: bool = True, park: bool = True
    ) -> AsyncIterator[Any]:
        """:meth:`_open` once the factory was called: await its result if needed, adopt it."""
        if type(source) is not _ASYNC_GENERATOR and inspect.isawaitable(source):
            if park:
                self._parked = True
            try:
                source = await source
            finally:
                if park:
                    self._parked = False
        if not own:
            try:
                return self._wrap_hedge(source)
            except BaseException:
                from l0._first_token import close_quietly

                await close_quietly(source)
                raise
        return self._adopt(source)

    def _adopt(self, source: Any) -> AsyncIterator[Any]:
        """Make ``source`` the attempt's stream: pick its adapter and wrap it."""
        self._source = source
        adapter = self._pick_adapter(source)
        observed = self._observed
        if observed:
            self._obs(
                _OBS.ADAPTER_WRAP_START, stream_type=type(source).__name__, adapter_id=adapter.name
            )
            self._obs(_OBS.ADAPTER_DETECTED, adapter_id=adapter.name)
        iterator = adapter.wrap(source)
        self._iterator = iterator
        # A plain async generator (string streams) has neither check to fail.
        if type(iterator) is not _ASYNC_GENERATOR:
            if not hasattr(iterator, "__anext__"):
                self._iterator = None
                raise InvalidStreamError(
                    f"adapter {adapter.name!r} returned {type(iterator).__name__}, "
                    "not an async iterator"
                )
            self._raw_list = _raw_chunks_of(iterator)
        if observed:
            self._obs(_OBS.ADAPTER_WRAP_END, adapter_id=adapter.name)
        return iterator

    def _wrap_hedge(self, source: Any) -> AsyncIterator[Any]:
        adapter = self._pick_adapter(source)
        iterator = adapter.wrap(source)
        if not hasattr(iterator, "__anext__"):
            raise InvalidStreamError(
                f"adapter {adapter.name!r} returned {type(iterator).__name__}, "
                "not an async iterator"
            )
        self._hedge_source = source
        return iterator

    def _pick_adapter(self, source: Any) -> Adapter:
        opts = self._opts
        if opts.adapter is not None:
            return opts.adapter
        adapter = Adapters.detect(source, opts.plugins)
        if adapter is not None:
            return adapter
        tried = ", ".join(Adapters.names(opts.plugins)) or "none"
        raise AdapterNotFoundError(
            f"the stream factory returned {type(source).__module__}.{type(source).__qualname__}, "
            f"which no adapter can read (tried: {tried}); {install_hint(source, opts.plugins)}."
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
                    f"L0 accepts str tokens and l0.Event items: "
                    f"{install_hint(item, self._opts.plugins)}."
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
            if isinstance(item.data, Mapping) and item.data.get("model"):
                self._response_model = str(item.data["model"])
            if isinstance(item.data, Mapping) and "finish_reason" in item.data:
                state.finish_reason = item.data["finish_reason"]
                if (
                    state.finish_reason == "length"
                    and self._opts.retry_on_length
                    and state.length_continuations >= self._opts.continue_on_length
                ):
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
            guard_emit, drift_emit = self._check_emitters()
            opts = self._opts
            if self._guard_run is not None:
                self._guard_run = opts.guardrails.start(guard_emit)
            if self._drift_run is not None:
                self._drift_run = opts.drift.start(drift_emit)
            self._checked = 0
            self._next_check = min(self._next_check, len(state._parts) + self._interval)

    def _has_output(self) -> bool:
        state = self.state
        if state.tool_calls:
            return True
        for part in state._parts:  # a plain loop: the first token usually decides
            if part and not part.isspace():
                return True
        return bool(state._prefix.strip())
