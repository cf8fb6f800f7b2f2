"""One first-token core: the first contender to deliver wins, every other one is closed at once.

:class:`Contest` is the machinery; two callers put a policy on it:

* hedging (``l0.run(..., hedge_after=)``, in :mod:`l0._attempt`): the contenders are an
  attempt's raw provider streams; the primary starts at once and the hedge ``hedge_after``
  seconds later; a primary that fails before the hedge starts is a plain failure
  (``idle="stop"``);
* the streaming race (:func:`l0.race_stream`, through :class:`FirstToken`): the contenders
  are whole ``l0`` sessions' event streams, all started at once; their first *token* (or tool
  call) counts, the events before it are replayed to the consumer.

Each contender is read in a task of its own only until its first item; the winner is handed
back with the items already read and its iterator, which the caller then reads itself, so after
the first token no task or queue sits between the winner and its reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from l0.types import Event

if TYPE_CHECKING:
    from l0._api import Result

__all__ = ["Contest", "FirstToken", "Lead", "Winner", "close_quietly"]

T = TypeVar("T")

Opener = Callable[[], AsyncIterator[T] | Awaitable[AsyncIterator[T]]]
"""Starts one contender: returns its async iterator (or an awaitable of it)."""
Closer = Callable[[AsyncIterator[T] | None], Awaitable[None]]
"""Closes what an opener opened, given its iterator (``None`` when opening failed)."""
Idle = Literal["stop", "start_next"]

_END: Any = object()


async def close_quietly(*objects: Any) -> None:
    """Close each object (``aclose()`` or ``close()``, awaited when needed), ignoring errors.

    An object given twice, or ``None``, is skipped.
    """
    seen: list[Any] = []
    for obj in objects:
        if obj is None or any(obj is s for s in seen):
            continue
        seen.append(obj)
        closer = getattr(obj, "aclose", None) or getattr(obj, "close", None)
        if closer is None:
            continue
        with contextlib.suppress(Exception):
            result = closer()
            if inspect.isawaitable(result):
                await result


async def _aclose(iterator: AsyncIterator[Any] | None) -> None:
    await close_quietly(iterator)


@dataclass(slots=True, eq=False)
class _Contender(Generic[T]):
    index: int
    opener: Opener[T]
    close: Closer[T]
    is_first: Callable[[T], bool] | None
    start_at: float
    on_start: Callable[[], None] | None
    head: list[T] = field(default_factory=list)
    iterator: AsyncIterator[T] | None = None
    task: asyncio.Task[bool] | None = None
    error: BaseException | None = None
    ended: bool = False
    closed: bool = False


@dataclass(frozen=True, slots=True)
class Winner(Generic[T]):
    """The contender that delivered first.

    Attributes:
        index: Its position, in the order contenders were added.
        head: The items read from it so far; the last one is its first token.
        iterator: Its iterator, positioned after ``head``: read the rest from it directly.
        elapsed: Seconds from the start of the contest to the decision.
    """

    index: int
    head: list[T]
    iterator: AsyncIterator[T]
    elapsed: float

    async def items(self) -> AsyncIterator[T]:
        """``head`` replayed, then the rest of the iterator."""
        for item in self.head:
            yield item
        async for item in self.iterator:
            yield item


class Contest(Generic[T]):
    """Start contenders now or later; the first to deliver its first item wins.

    Add contenders with :meth:`add` (a delay staggers a start: a hedge), then
    ``await contest.decide()``. Before it returns, every other contender is cancelled and
    closed (its closer awaited, so connections end promptly); contenders not yet started never
    start. A contender that fails or ends before its first item is out (its error is kept in
    :attr:`errors`). When no contender is running and some are still to start, ``idle``
    decides: ``"start_next"`` starts the next one at once, ``"stop"`` ends the contest with no
    winner. Cancelling the caller of :meth:`decide` closes every contender; call :meth:`close`
    to close everything, the winner too.

    Args:
        idle: What to do when no contender is running and some are still to start.
    """

    __slots__ = ("_contenders", "_decided", "_idle", "_loop", "_start", "_wake")

    def __init__(self, *, idle: Idle = "start_next") -> None:
        if idle not in ("stop", "start_next"):
            raise ValueError(f"idle={idle!r}: choose one of 'stop', 'start_next'")
        self._idle = idle
        self._loop = asyncio.get_running_loop()
        self._start = self._loop.time()
        self._contenders: list[_Contender[T]] = []
        self._decided = False
        self._wake: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self._contenders)

    @property
    def started(self) -> list[int]:
        """Indexes of the contenders that were started, in index order."""
        return [c.index for c in self._contenders if c.task is not None]

    @property
    def ended(self) -> list[int]:
        """Indexes of the contenders that ended without an item."""
        return [c.index for c in self._contenders if c.ended]

    @property
    def errors(self) -> dict[int, BaseException]:
        """Contender index -> the error it failed with before it delivered."""
        return {c.index: c.error for c in self._contenders if c.error is not None}

    def add(
        self,
        opener: Opener[T],
        *,
        delay: float = 0.0,
        close: Closer[T] | None = None,
        is_first: Callable[[T], bool] | None = None,
        on_start: Callable[[], None] | None = None,
    ) -> int:
        """Add a contender; returns its index.

        Args:
            opener: Called (in the contender's task) to get its async iterator.
            delay: Seconds from now until it starts; 0 starts it at once.
            close: Closes it when it loses (default: ``aclose()`` of its iterator).
            is_first: Which item counts as its first token (default: any item). The items
                before it are kept and handed to the caller with the win.
            on_start: Called when it starts.

        Raises:
            RuntimeError: the contest is decided already.
        """
        if self._decided:
            raise RuntimeError("the race has a leader already")
        contender = _Contender(
            len(self._contenders),
            opener,
            close or _aclose,
            is_first,
            self._loop.time() + delay,
            on_start,
        )
        self._contenders.append(contender)
        if delay <= 0:
            self._launch(contender)
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)
        return contender.index

    def _launch(self, contender: _Contender[T]) -> None:
        if contender.on_start is not None:
            contender.on_start()
        contender.task = self._loop.create_task(
            self._read_first(contender), name=f"l0-first-token-{contender.index}"
        )

    async def _read_first(self, contender: _Contender[T]) -> bool:
        # True when the contender delivered its first item (the last of ``head``).
        try:
            opened = contender.opener()
            iterator = await opened if inspect.isawaitable(opened) else opened
            contender.iterator = iterator
            is_first, head = contender.is_first, contender.head
            while True:
                item = await anext(iterator, _END)
                if item is _END:
                    break
                head.append(item)
                if is_first is None or is_first(item):
                    return True
        except BaseException:
            # Lost (cancelled) or failed: its connection must not stay open, even when the
            # caller is cancelled again while it closes.
            await asyncio.shield(self._close(contender))
            raise
        await self._close(contender)
        return False

    async def _close(self, contender: _Contender[T]) -> None:
        if contender.closed:
            return
        contender.closed = True
        with contextlib.suppress(Exception):
            await contender.close(contender.iterator)

    async def decide(self) -> Winner[T] | None:
        """Wait for the first contender to deliver; close every other one.

        Returns:
            The :class:`Winner`, or ``None`` when every contender failed or ended without an
            item (see :attr:`errors` and :attr:`ended`), or ``idle="stop"`` found none running.
        """
        loop = self._loop
        winner: _Contender[T] | None = None
        handed = False
        try:
            while True:
                # Settle what finished first: a contender may have delivered before this call.
                winner = self._settle()
                if winner is not None:
                    break
                running: list[asyncio.Future[Any]] = [
                    c.task for c in self._contenders if c.task is not None and not c.task.done()
                ]
                waiting = [c for c in self._contenders if c.task is None]
                if not running:
                    if not waiting or self._idle == "stop":
                        break
                    self._launch(min(waiting, key=_start_at))
                    continue
                timeout = None
                if waiting:
                    timeout = max(0.0, min(c.start_at for c in waiting) - loop.time())
                wake = self._wake = loop.create_future()
                running.append(wake)
                await asyncio.wait(running, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                wake.cancel()
                winner = self._settle()
                if winner is not None:
                    break  # a hedge due at this very moment is not started
                now = loop.time()
                for c in waiting:
                    if c.start_at <= now:
                        self._launch(c)
            self._decided = True
            await self._close_all(winner)
            handed = winner is not None
        finally:
            self._decided = True
            self._wake = None
            if not handed:
                await self._close_all(None)
        if winner is None:
            return None
        assert winner.iterator is not None
        return Winner(winner.index, winner.head, winner.iterator, loop.time() - self._start)

    def _settle(self) -> _Contender[T] | None:
        # Record the outcome of every contender that finished; return the first that delivered.
        winner = None
        for c in self._contenders:
            task = c.task
            if task is None or not task.done() or c.ended or c.error is not None:
                continue
            if task.cancelled():
                c.ended = True  # cancelled by someone else: out, without an error
            elif (error := task.exception()) is not None:
                c.error = error
            elif not task.result():
                c.ended = True
            elif winner is None:
                winner = c
        return winner

    async def _close_all(self, keep: _Contender[T] | None) -> None:
        tasks = []
        for c in self._contenders:
            if c.task is not None and not c.task.done():
                c.task.cancel()
                tasks.append(c.task)
        if tasks:
            # asyncio.wait, not gather: a contender's own error must not stop the others'
            # closing, and a cancellation of the caller must still reach it.
            await asyncio.wait(tasks)
        for c in self._contenders:
            if c is not keep and c.task is not None:
                await self._close(c)

    async def close(self) -> None:
        """Cancel and close every contender, the winner too."""
        self._decided = True
        await self._close_all(None)


def _start_at(contender: _Contender[Any]) -> float:
    return contender.start_at


def _is_content(event: Event) -> bool:
    # A tool call is content too: a tool-calling answer may have no text token.
    return event.is_token or event.is_tool_call


@dataclass(slots=True)
class Lead:
    """The session that delivered the first token.

    Attributes:
        index: Its position, in the order contenders were added.
        result: Its session.
        elapsed: Seconds from the start of the :class:`FirstToken` to that first token.
        head: Its events up to and including the first token (not yet seen by anyone).
        iterator: Its event stream after ``head``.
    """

    index: int
    result: Result
    elapsed: float
    head: list[Event] = field(repr=False)
    iterator: AsyncIterator[Event] = field(repr=False)

    async def events(self) -> AsyncIterator[Event]:
        """Every stream event of the leader, from its first one; iterate once.

        Stopping early closes the session.
        """
        try:
            for event in self.head:
                yield event
            async for event in self.iterator:
                yield event
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.result.aclose())


class FirstToken:
    """A :class:`Contest` of ``l0`` sessions: the first to deliver a token (or a tool call) wins.

    Add sessions with :meth:`add` (at any time until the lead is decided), then
    ``await first.lead()`` in the task that will read the leader: every other session is
    closed before it returns, and the leader's session then runs in that task (its timeouts and
    ``abort()`` act there) with no hand-off per event. A session that fails or ends before any
    token is out. :meth:`close` closes whatever is still open (call it in a ``finally``).
    """

    __slots__ = ("_contest", "_results")

    def __init__(self) -> None:
        self._contest: Contest[Event] = Contest()
        self._results: list[Result] = []

    @property
    def contenders(self) -> int:
        """How many contenders were added."""
        return len(self._results)

    def errors(self) -> list[BaseException | None]:
        """Each contender's error (``None`` for one that did not fail), in order added."""
        errors = self._contest.errors
        return [errors.get(i) for i in range(len(self._results))]

    def failed(self, index: int) -> bool:
        """True when contender ``index`` failed (rather than being cancelled)."""
        return index in self._contest.errors

    def add(self, result: Result) -> int:
        """Start iterating ``result`` as a new contender; returns its index."""

        async def close(_: AsyncIterator[Event] | None) -> None:
            await result.aclose()

        index = self._contest.add(result.__aiter__, close=close, is_first=_is_content)
        self._results.append(result)
        return index

    async def lead(self) -> Lead:
        """Wait for the first token and close every other contender.

        Raises:
            AllTasksFailedError: every contender failed or ended without a token.
        """
        winner = await self._contest.decide()
        if winner is None:
            from l0._group import AllTasksFailedError, TaskOutcome

            errors = self.errors()
            outcomes = [
                TaskOutcome(i, "failed" if error else "completed", error=error)
                for i, error in enumerate(errors)
            ]
            raise AllTasksFailedError(
                "no contender delivered a token: "
                + "; ".join(f"#{o.index}: {o.error!r}" for o in outcomes),
                outcomes=outcomes,
            )
        result = self._results[winner.index]
        # It was read in a contender task until now; its timers must cancel the reader's.
        result.move_to_current_task()
        return Lead(winner.index, result, winner.elapsed, winner.head, winner.iterator)

    async def close(self) -> None:
        """Close every contender (the leader too)."""
        await self._contest.close()
