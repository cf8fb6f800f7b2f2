"""First contender to deliver a token wins; the others are closed at once.

Shared by :func:`l0.race_stream` and hedged requests (a second request started when the first
token is late): both add running ``l0.Result`` sessions to a :class:`FirstToken` and stream the
leader's events.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from l0._api import Result
from l0._group import AllTasksFailedError, TaskOutcome
from l0.types import Event

__all__ = ["FirstToken", "Lead"]


def _now() -> float:
    return time.monotonic()


_END: Any = object()


@dataclass(slots=True)
class _Contender:
    index: int
    result: Result
    # Events handed to the consumer: a deque and a wake-up flag cost less per token than an
    # asyncio.Queue (measured in benchmarks/bench_race.py).
    buffer: deque[Any] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    pump: asyncio.Task[None] | None = None
    error: BaseException | None = None
    finished: bool = False  # ended (completed or failed) before it delivered a token
    tokens: bool = False


@dataclass(slots=True)
class Lead:
    """The contender that delivered the first token.

    Attributes:
        index: Its position, in the order contenders were added.
        result: Its session.
        elapsed: Seconds from the start of the :class:`FirstToken` to that first token.
    """

    index: int
    result: Result
    elapsed: float
    _contender: _Contender = field(repr=False)

    async def events(self) -> AsyncIterator[Event]:
        """Every stream event of the leader, from its first one; iterate once.

        The session keeps running in the task that started it (so its timeouts stay armed);
        events reach the caller through a buffer. Stopping early closes the session.
        """
        contender = self._contender
        buffer, wake = contender.buffer, contender.wake
        popleft = buffer.popleft
        try:
            while True:
                while buffer:
                    item = popleft()
                    if item is _END:
                        return
                    if isinstance(item, BaseException):
                        raise item
                    yield item
                wake.clear()
                await wake.wait()
        finally:
            pump = contender.pump
            if pump is not None and not pump.done():
                contender.result.abort()
                pump.cancel()
                with contextlib.suppress(BaseException):
                    await pump
            with contextlib.suppress(Exception):
                await asyncio.shield(contender.result.aclose())


class FirstToken:
    """First contender to deliver a token wins; every other contender is closed at once.

    Add running sessions with :meth:`add` (at any time, e.g. a hedged request started when
    the first token is late), then ``await first.lead()``. Every other session is aborted and
    its provider stream closed before ``lead()`` returns; the leader's events are read with
    :meth:`Lead.events`. A contender that fails or ends before any token is out.
    :meth:`close` aborts whatever is still running (call it in a ``finally``).
    """

    __slots__ = ("_contenders", "_done", "_lead", "_start")

    def __init__(self) -> None:
        self._contenders: list[_Contender] = []
        self._lead: _Contender | None = None
        self._done = asyncio.Event()
        self._start = _now()

    @property
    def contenders(self) -> int:
        """How many contenders were added."""
        return len(self._contenders)

    def errors(self) -> list[BaseException | None]:
        """Each contender's error (``None`` for one that did not fail), in order added."""
        return [c.error for c in self._contenders]

    def add(self, result: Result) -> int:
        """Start iterating ``result`` as a new contender; returns its index."""
        if self._lead is not None:
            raise RuntimeError("the race has a leader already")
        contender = _Contender(len(self._contenders), result)
        self._contenders.append(contender)
        self._done.clear()
        contender.pump = asyncio.get_running_loop().create_task(
            self._pump(contender), name=f"l0-first-token-{contender.index}"
        )
        return contender.index

    async def _pump(self, contender: _Contender) -> None:
        # The session is iterated here to its end, so that its timers keep firing into the
        # task that runs it; the consumer reads the buffer.
        buffer, wake = contender.buffer, contender.wake
        append, notify = buffer.append, wake.set
        try:
            iterator = contender.result.__aiter__()
            async for event in iterator:
                append(event)
                # A tool call is content too: a tool-calling answer may have no text token.
                if event.is_token or event.is_tool_call:
                    contender.tokens = True
                    if self._lead is None:
                        self._lead = contender
                        self._done.set()
                    break
            notify()
            # Past the first token only the consumer hand-off remains per event.
            async for event in iterator:
                append(event)
                notify()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            contender.error = exc
            append(exc)
        else:
            append(_END)
        notify()
        if not contender.tokens:
            contender.finished = True
            if self._lead is None and all(c.finished for c in self._contenders):
                self._done.set()

    async def lead(self) -> Lead:
        """Wait for the first token and close every other contender.

        Raises:
            AllTasksFailedError: every contender failed or ended without a token.
        """
        await self._done.wait()
        winner = self._lead
        await self._close_others(winner)
        if winner is None:
            outcomes = [
                TaskOutcome(c.index, "failed" if c.error else "completed", error=c.error)
                for c in self._contenders
            ]
            raise AllTasksFailedError(
                "no contender delivered a token: "
                + "; ".join(f"#{o.index}: {o.error!r}" for o in outcomes),
                outcomes=outcomes,
            )
        return Lead(winner.index, winner.result, _now() - self._start, winner)

    async def _close_others(self, winner: _Contender | None) -> None:
        losers = [c for c in self._contenders if c is not winner]
        for c in losers:
            c.result.abort()
            if c.pump is not None and not c.pump.done():
                c.pump.cancel()
        for c in losers:
            if c.pump is not None:
                with contextlib.suppress(BaseException):
                    await c.pump
            with contextlib.suppress(Exception):
                await c.result.aclose()

    def failed(self, index: int) -> bool:
        """True when contender ``index`` failed (rather than being cancelled)."""
        return self._contenders[index].error is not None

    async def close(self) -> None:
        """Abort every contender still running (the leader too)."""
        await self._close_others(None)
