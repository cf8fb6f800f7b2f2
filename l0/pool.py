"""``l0.Pool``: a reusable runner with a concurrency cap and provider rate limits.

Providers enforce requests per minute (RPM) and tokens per minute (TPM); a pool that ignores
them only produces 429s. The pool asks a :class:`RateLimiter` before each task starts and tells
it how many tokens the task used when it ends. :class:`LocalRateLimiter` keeps that state in
this process; a limiter shared between processes (e.g. through Redis) implements the same two
methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Protocol, TypeVar, overload, runtime_checkable

from l0._group import (
    GroupBus,
    StructuredTask,
    TaskOutcome,
    TextTask,
    ValueTask,
    check_positive,
    check_tasks,
    child_scope,
    run_task,
    split_options,
)
from l0.events import ObservabilityEventType

__all__ = ["LocalRateLimiter", "Pool", "RateLimiter"]

T = TypeVar("T")
_OBS = ObservabilityEventType


@runtime_checkable
class RateLimiter(Protocol):
    """What a pool asks before a task starts and tells after it ends.

    Implement both methods to share limits between pools or processes.
    """

    async def acquire(self) -> None:
        """Wait until one more request may start (and count it)."""

    def record(self, tokens: int) -> None:
        """Charge the tokens a finished request used (from the provider's usage report)."""


class LocalRateLimiter:
    """Token buckets for requests and tokens per minute, in this process.

    Requests: the bucket holds ``burst`` requests (default: one second's worth, ``rpm / 60``,
    at least 1) and refills at ``rpm / 60`` per second, so a burst of calls starts ``burst``
    at once and then one every ``60 / rpm`` seconds.

    Tokens: a request's tokens are known only when it ends, so they are charged then; the
    bucket holds ``tpm`` tokens, refills at ``tpm / 60`` per second and may go below zero, and
    no new request starts while it is below zero.

    Args:
        rpm: Requests per minute, or ``None`` for no request limit.
        tpm: Tokens per minute, or ``None`` for no token limit.
        burst: Requests that may start at once before the RPM pacing applies.
    """

    __slots__ = ("_lock", "_req_cap", "_req_level", "_req_rate", "_seen", "_tok_level", "_tok_rate")

    def __init__(
        self, *, rpm: float | None = None, tpm: float | None = None, burst: int | None = None
    ) -> None:
        if rpm is not None:
            check_positive("rpm", rpm)
        if tpm is not None:
            check_positive("tpm", tpm)
        if burst is not None:
            check_positive("burst", burst, integer=True)
        self._req_rate = rpm / 60.0 if rpm is not None else None
        cap = float(burst) if burst is not None else max(1.0, (rpm or 60.0) / 60.0)
        self._req_cap = cap
        self._req_level = cap
        self._tok_rate = tpm / 60.0 if tpm is not None else None
        self._tok_level = float(tpm) if tpm is not None else 0.0
        self._seen = time.monotonic()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        elapsed = now - self._seen
        self._seen = now
        if self._req_rate is not None:
            self._req_level = min(self._req_cap, self._req_level + elapsed * self._req_rate)
        if self._tok_rate is not None:
            self._tok_level = min(self._tok_rate * 60.0, self._tok_level + elapsed * self._tok_rate)

    async def acquire(self) -> None:
        """Wait until the request and token budgets allow one more request."""
        async with self._lock:
            while True:
                self._refill()
                wait = 0.0
                if self._req_rate is not None and self._req_level < 1.0:
                    wait = (1.0 - self._req_level) / self._req_rate
                if self._tok_rate is not None and self._tok_level < 0.0:
                    wait = max(wait, -self._tok_level / self._tok_rate)
                if wait <= 0.0:
                    if self._req_rate is not None:
                        self._req_level -= 1.0
                    return
                await asyncio.sleep(wait)

    def record(self, tokens: int) -> None:
        """Charge ``tokens`` to the token budget."""
        if self._tok_rate is not None and tokens > 0:
            self._refill()
            self._tok_level -= tokens


class Pool:
    """Run tasks with at most ``concurrency`` at a time, within RPM/TPM limits.

    Use it as ``async with l0.Pool(concurrency=4, rpm=600) as pool:``; leaving the block waits
    for every submitted task (or cancels them all when the block raised).

    Args:
        concurrency: Most tasks running at once.
        rpm: Requests per minute (each task counts as one request).
        tpm: Tokens per minute, charged from each task's reported usage.
        burst: Requests that may start at once (see :class:`LocalRateLimiter`).
        limiter: Your own :class:`RateLimiter` instead of ``rpm``/``tpm``/``burst``.
        session_id: ``session_id`` of the pool's observability events.
        **run_options: Options of :func:`l0.run` for sessions the pool starts itself;
            ``on_event`` also receives the pool's own events.
    """

    def __init__(
        self,
        *,
        concurrency: int = 4,
        rpm: float | None = None,
        tpm: float | None = None,
        burst: int | None = None,
        limiter: RateLimiter | None = None,
        session_id: str | None = None,
        **run_options: Any,
    ) -> None:
        check_positive("concurrency", concurrency, integer=True)
        if limiter is not None:
            if not isinstance(limiter, RateLimiter):
                raise TypeError(
                    f"limiter={limiter!r}: expected an object with async acquire() and "
                    "record(tokens)"
                )
            if (rpm, tpm, burst) != (None, None, None):
                raise ValueError("give limiter= or rpm=/tpm=/burst=, not both")
        elif (rpm, tpm) != (None, None) or burst is not None:
            limiter = LocalRateLimiter(rpm=rpm, tpm=tpm, burst=burst)
        pm, on_event, options = split_options(run_options, session_id)
        self._options = options
        self._limiter = limiter
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self._bus = GroupBus("pool", pm, on_event, session_id)
        self._started = False
        self._start = time.monotonic()
        self.submitted = 0
        """Tasks submitted so far."""
        self.done = 0
        """Tasks finished with a value so far."""
        self.failed = 0
        """Tasks failed (or cancelled) so far."""
        self.in_flight = 0
        """Tasks running now (past the concurrency and rate limits)."""

    @property
    def group_id(self) -> str:
        """The pool's id; child sessions carry it as ``parent_id``."""
        return self._bus.group_id

    @overload
    def submit(self, task: StructuredTask[T]) -> asyncio.Future[T]: ...

    @overload
    def submit(self, task: TextTask) -> asyncio.Future[str]: ...

    @overload
    def submit(self, task: ValueTask[T]) -> asyncio.Future[T]: ...

    @overload
    def submit(self, task: Callable[..., Any]) -> asyncio.Future[Any]: ...

    def submit(self, task: Callable[..., Any]) -> asyncio.Future[Any]:
        """Queue one task; returns a future of its value (or its error).

        Raises:
            RuntimeError: the pool is closed.
            TypeError: ``task`` is not callable.
        """
        if self._closed:
            raise RuntimeError("this pool is closed")
        if not callable(task):
            raise TypeError(f"task={task!r}: expected a callable (a task factory)")
        return self._start_task(task, self.submitted)

    def _start_task(self, task: Callable[..., Any], index: int) -> asyncio.Task[Any]:
        if not self._started:
            self._started = True
            self._bus.emit(_OBS.GROUP_START, task_count=0, mode="pool")
        self.submitted += 1
        running = asyncio.get_running_loop().create_task(
            self._run(task, index), name=f"l0-pool-{index}"
        )
        self._tasks.add(running)
        running.add_done_callback(self._tasks.discard)
        return running

    async def _run(self, task: Callable[..., Any], index: int) -> Any:
        began = 0.0
        try:
            async with self._slots:
                if self._limiter is not None:
                    await self._limiter.acquire()
                self.in_flight += 1
                began = time.monotonic()
                try:
                    with child_scope(self._bus.group_id):
                        value, tokens = await run_task(task, self._options)
                finally:
                    self.in_flight -= 1
            if tokens is not None and self._limiter is not None:
                self._limiter.record(tokens)
        except asyncio.CancelledError:
            self.failed += 1
            self._bus.emit(_OBS.GROUP_TASK_CANCELLED, index=index)
            raise
        except Exception as exc:
            self.failed += 1
            self._bus.emit(_OBS.GROUP_TASK_FAILED, index=index, error=repr(exc))
            self._progress()
            raise
        self.done += 1
        self._bus.emit(
            _OBS.GROUP_TASK_COMPLETE,
            index=index,
            duration_ms=int((time.monotonic() - began) * 1000),
        )
        self._progress()
        return value

    def _progress(self) -> None:
        self._bus.emit(
            _OBS.GROUP_PROGRESS, done=self.done, failed=self.failed, total=self.submitted
        )

    async def map(self, tasks: Sequence[Callable[..., Any]]) -> list[TaskOutcome]:
        """Run ``tasks`` in the pool; one :class:`~l0.TaskOutcome` each, in input order.

        Errors are collected in the outcomes, not raised.
        """
        if self._closed:
            raise RuntimeError("this pool is closed")
        checked = check_tasks(tasks)
        futures = [self._start_task(task, self.submitted) for task in checked]
        starts = time.monotonic()
        outcomes = []
        for i, future in enumerate(futures):
            outcome = TaskOutcome(i)
            try:
                outcome.value = await asyncio.shield(future)
                outcome.status = "completed"
            except asyncio.CancelledError:
                if not future.cancelled():
                    for other in futures:
                        other.cancel()
                    raise
                outcome.status = "cancelled"
            except Exception as exc:
                outcome.status, outcome.error = "failed", exc
            outcome.duration = time.monotonic() - starts
            outcomes.append(outcome)
        return outcomes

    async def drain(self) -> None:
        """Wait until every task submitted so far has settled (errors are not raised)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self, *, cancel: bool = False) -> None:
        """Stop accepting tasks; with ``cancel=True`` cancel those still queued or running.

        Without ``cancel`` the running tasks go on; ``await pool.drain()`` waits for them.
        """
        already = self._closed
        self._closed = True
        if cancel:
            pending = list(self._tasks)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(BaseException):
                    await task
        if not already and self._started:
            status = "cancelled" if cancel else "success"
            self._bus.emit(
                _OBS.GROUP_END,
                status=status,
                duration_ms=int((time.monotonic() - self._start) * 1000),
            )

    async def __aenter__(self) -> Pool:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            await self.close(cancel=True)
            return
        try:
            await self.drain()
        except BaseException:
            await self.close(cancel=True)
            raise
        await self.close()
