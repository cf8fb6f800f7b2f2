"""Fire-and-forget delivery of lifecycle callbacks and ``l0_on_*`` hooks.

Each session owns one :class:`Notifier`. Notifications are queued in the order the session makes
them and run one at a time by a pump task, so the order is deterministic, yet the stream never
waits for them: ``async def`` callbacks run on the loop, plain ``def`` callbacks in a worker
thread (a ``time.sleep`` in a callback must not freeze the event loop). A callback that raises is
logged and the next one runs: with its traceback the first time in a session, then counted, and
the count logged once the session has ended (a raising ``on_event`` would otherwise log dozens
of tracebacks per session, issue 8). The session's exporters report their failures here too.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("l0.callbacks")

_Job = tuple[str, Callable[..., Any], tuple[Any, ...]]


def _copied(args: tuple[Any, ...]) -> tuple[Any, ...]:
    out = []
    for arg in args:
        if isinstance(arg, str | int | float | bool | type(None) | BaseException):
            out.append(arg)
        elif hasattr(arg, "snapshot"):
            out.append(arg.snapshot())
        elif hasattr(arg, "copy") and type(arg).__module__ == "l0.events":
            out.append(arg.copy())
        else:
            out.append(copy.deepcopy(arg))
    return tuple(out)


class Notifier:
    """Queues callback invocations for one session and runs them off the stream's path."""

    __slots__ = ("_failures", "_finishing", "_idle", "_jobs", "_task")

    def __init__(self) -> None:
        self._jobs: collections.deque[_Job] = collections.deque()
        self._task: asyncio.Task[None] | None = None
        self._idle: asyncio.Event | None = None
        self._failures: dict[str, int] = {}
        self._finishing = False

    def failed(self, label: str) -> None:
        """Note that ``label`` raised (call from an ``except`` block).

        The first failure of each label is logged with its traceback; later ones are counted
        and the count is logged when the session has finished.
        """
        count = self._failures.get(label, 0)
        self._failures[label] = count + 1
        if count == 0:
            log.exception(
                "l0: %s raised; the stream goes on (its further failures in this session are "
                "counted, not logged)",
                label,
            )

    def finish(self) -> None:
        """The session has ended: log the failure counts once the queue has drained."""
        self._finishing = True
        if self._task is None or self._task.done():
            self._report()

    def _report(self) -> None:
        for label, count in self._failures.items():
            if count > 1:
                log.warning("l0: %s raised %d more time(s) in this session", label, count - 1)
                self._failures[label] = 1

    def call(self, label: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        """Queue ``fn(*copies_of_args)``; returns at once."""
        self._jobs.append((label, fn, _copied(args)))
        if self._task is None or self._task.done():
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._pump(), name="l0-callbacks")

    @property
    def pending(self) -> int:
        """Callbacks queued or running."""
        running = 1 if self._task is not None and not self._task.done() else 0
        return len(self._jobs) + running

    async def wait(self) -> None:
        """Wait until every queued callback has run."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        jobs = self._jobs
        try:
            while jobs:
                label, fn, args = jobs.popleft()
                await self._run_one(loop, label, fn, args)
            if self._finishing:
                self._report()
        except asyncio.CancelledError:
            # The loop is shutting down (asyncio.run cancels leftover tasks): run what is left
            # inline so that on_complete and friends are not silently lost.
            while jobs:
                label, fn, args = jobs.popleft()
                _run_sync(label, fn, args)
            raise

    async def _run_one(
        self,
        loop: asyncio.AbstractEventLoop,
        label: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
    ) -> None:
        try:
            if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
                getattr(fn, "__call__", None)  # noqa: B004 - async callable objects
            ):
                await fn(*args)
                return
            result = await loop.run_in_executor(None, functools.partial(fn, *args))
            if inspect.isawaitable(result):
                await result
        except asyncio.CancelledError:
            raise
        except Exception:
            self.failed(f"callback {label}")


def _run_sync(label: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        result = fn(*args)
        if inspect.iscoroutine(result):
            result.close()
            log.warning("l0: async callback %s skipped: the event loop is shutting down", label)
    except Exception:
        log.exception("l0: callback %s raised; the stream goes on", label)
