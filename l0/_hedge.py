"""Hedging one attempt: the first provider stream to deliver an item wins.

:func:`first_token` starts contenders at given offsets (the first at once, a hedge after
``hedge_after`` seconds), and returns the first one whose stream yields an item. Every other
contender is cancelled and its provider stream closed before it returns, so no connection
outlives the decision.

It is the attempt-level form of race mode's "first to deliver a token wins, close the other
at once" (``l0.race_stream`` races whole sessions). Hedging works on the raw provider streams
of one session's attempt, so an unhedged attempt costs nothing per token and a hedged one
needs no extra session or event buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, NamedTuple

__all__ = ["Opener", "Win", "close_pair", "first_token"]

Opener = Callable[[], Awaitable[tuple[Any, AsyncIterator[Any]]]]
"""Opens one contender: returns ``(source, iterator)`` (the provider object and its items)."""


class Win(NamedTuple):
    """The contender that delivered first.

    Attributes:
        winner: Position of the winner in ``openers``.
        source: What its opener returned as the provider object.
        iterator: Its stream, with ``first`` already taken from it.
        first: The first item (``end`` when every contender ended without one).
        started: Indexes of the contenders that were started, in order.
        errors: Contender index -> the error it failed with before the decision.
    """

    winner: int
    source: Any
    iterator: AsyncIterator[Any]
    first: Any
    started: list[int]
    errors: dict[int, BaseException]


async def close_pair(source: Any, iterator: Any) -> None:
    """Close a contender's stream and provider object, ignoring their errors."""
    for obj in (iterator, source) if source is not iterator else (iterator,):
        closer = getattr(obj, "aclose", None) or getattr(obj, "close", None)
        if closer is None:
            continue
        with contextlib.suppress(Exception):
            result = closer()
            if inspect.isawaitable(result):
                await result


async def _contend(opener: Opener, end: Any) -> tuple[Any, AsyncIterator[Any], Any]:
    source, iterator = await opener()
    try:
        first = await anext(iterator, end)
    except BaseException:
        # Lost (cancelled) or failed: its connection must not stay open.
        await asyncio.shield(close_pair(source, iterator))
        raise
    return source, iterator, first


async def first_token(
    openers: Sequence[Opener],
    delays: Sequence[float],
    *,
    end: Any,
    on_start: Callable[[int], None] | None = None,
) -> Win:
    """Start ``openers[i]`` ``delays[i]`` seconds in, unless a contender delivered already.

    A contender that fails or ends without an item is out; while none is left running, the
    next one is not waited for: the first contender's failure is raised (or its empty end
    returned), so a failure before the hedge starts is handled as a plain failure.

    Args:
        openers: Contenders in start order.
        delays: Seconds from the call to the start of each (``delays[0]`` is ignored).
        end: The value ``anext`` returns for a stream that ended.
        on_start: Called with each contender's index as it starts (after the first).

    Returns:
        The :class:`Win`.

    Raises:
        BaseException: the first contender's error when no contender delivered.
    """
    loop = asyncio.get_running_loop()
    began = loop.time()
    tasks: dict[asyncio.Task[tuple[Any, AsyncIterator[Any], Any]], int] = {}
    errors: dict[int, BaseException] = {}
    ended: dict[int, tuple[Any, AsyncIterator[Any]]] = {}
    started: list[int] = []
    win: Win | None = None

    def launch(i: int) -> None:
        started.append(i)
        if i and on_start is not None:
            on_start(i)
        tasks[loop.create_task(_contend(openers[i], end), name=f"l0-first-token-{i}")] = i

    launch(0)
    try:
        while win is None:
            running = [task for task in tasks if not task.done()]
            if not running:
                break
            wait: float | None = None
            if len(started) < len(openers):
                wait = max(0.0, began + delays[len(started)] - loop.time())
            done, _ = await asyncio.wait(running, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            if not done:
                launch(len(started))
                continue
            for task in sorted(done, key=tasks.__getitem__):
                i = tasks[task]
                error = task.exception()
                if error is not None:
                    errors[i] = error
                    continue
                source, iterator, first = task.result()
                if first is end:
                    ended[i] = (source, iterator)
                    continue
                if win is None:
                    win = Win(i, source, iterator, first, started, errors)
                else:
                    await close_pair(source, iterator)
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
    for i, (source, iterator) in ended.items():
        if win is not None or i != 0:
            await close_pair(source, iterator)
    if win is not None:
        return win
    if 0 in ended:
        source, iterator = ended[0]
        return Win(0, source, iterator, end, started, errors)
    raise errors[0] if 0 in errors else next(iter(errors.values()))
