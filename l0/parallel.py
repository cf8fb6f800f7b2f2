"""``l0.parallel`` and ``l0.batched``: fan out tasks, fan the results back in, in order."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

from l0._group import (
    GroupBus,
    StructuredTask,
    TaskOutcome,
    TextTask,
    ValueTask,
    check_optional_callable,
    check_positive,
    check_tasks,
    child_scope,
    gather_cancel,
    run_task,
    split_options,
)
from l0.events import ObservabilityEventType
from l0.pool import LocalRateLimiter, RateLimiter

__all__ = ["ParallelResult", "batched", "parallel"]

T = TypeVar("T")
ItemT = TypeVar("ItemT")
_OBS = ObservabilityEventType
log = logging.getLogger("l0.parallel")


@dataclass(frozen=True, slots=True)
class ParallelResult(Generic[T]):
    """The outcome of :func:`parallel` or :func:`batched`, in input order.

    Attributes:
        outcomes: One :class:`~l0.TaskOutcome` per task: ``"completed"`` with its value,
            ``"failed"`` with its error, or ``"cancelled"`` (overall timeout).
        elapsed: Seconds the whole run took.
        group_id: The run's id; child sessions carry it as ``parent_id``.
    """

    outcomes: list[TaskOutcome]
    elapsed: float
    group_id: str

    @property
    def values(self) -> list[T | None]:
        """Each task's value, ``None`` where it did not complete."""
        return [o.value if o.ok else None for o in self.outcomes]

    @property
    def errors(self) -> list[BaseException | None]:
        """Each task's error, ``None`` where it completed."""
        return [o.error for o in self.outcomes]

    @property
    def succeeded(self) -> int:
        """How many tasks completed."""
        return sum(o.ok for o in self.outcomes)

    @property
    def failed(self) -> int:
        """How many tasks failed or were cancelled."""
        return len(self.outcomes) - self.succeeded

    @property
    def ok(self) -> bool:
        """True when every task completed."""
        return self.succeeded == len(self.outcomes)

    def unwrap(self) -> list[T]:
        """Every value, or the first error (in input order) raised."""
        for outcome in self.outcomes:
            if not outcome.ok:
                raise outcome.error or asyncio.CancelledError()
        return [o.value for o in self.outcomes]


class _Progress:
    __slots__ = ("bus", "callback", "done", "failed", "pending", "total")

    def __init__(self, bus: GroupBus, callback: Callable[..., Any] | None, total: int) -> None:
        self.bus = bus
        self.callback = callback
        self.total = total
        self.done = 0
        self.failed = 0
        self.pending: set[asyncio.Future[Any]] = set()

    def settled(self, ok: bool) -> None:
        if ok:
            self.done += 1
        else:
            self.failed += 1
        self.bus.emit(_OBS.GROUP_PROGRESS, done=self.done, failed=self.failed, total=self.total)
        callback = self.callback
        if callback is None:
            return
        try:
            verdict = callback(self.done, self.failed, self.total)
            if inspect.isawaitable(verdict):
                pending = asyncio.ensure_future(verdict)
                # Keep a reference until it is done, or the loop may collect it mid-way.
                self.pending.add(pending)
                pending.add_done_callback(self.pending.discard)
        except Exception:
            log.exception("l0: on_progress raised; the run goes on")


async def _fan_out(
    kind: str,
    checked: list[Callable[..., Any]],
    *,
    concurrency: int | None,
    fail_fast: bool,
    time_limit: float | None,
    on_progress: Callable[..., Any] | None,
    limiter: RateLimiter | None,
    session_id: str | None,
    run_options: dict[str, Any],
) -> ParallelResult[Any]:
    pm, on_event, options = split_options(run_options, session_id)
    bus = GroupBus(kind, pm, on_event, session_id)
    total = len(checked)
    outcomes = [TaskOutcome(i) for i in range(total)]
    progress = _Progress(bus, on_progress, total)
    start = time.monotonic()
    bus.emit(_OBS.GROUP_START, task_count=total, mode="fail_fast" if fail_fast else "collect")
    queue = iter(range(total))
    first_error: list[BaseException] = []
    stop = asyncio.Event()

    async def worker() -> None:
        for index in queue:
            if stop.is_set():
                return
            outcome = outcomes[index]
            outcome.status = "cancelled"
            began = time.monotonic()
            try:
                if limiter is not None:
                    await limiter.acquire()
                with child_scope(bus.group_id):
                    value, tokens = await run_task(checked[index], options)
            except asyncio.CancelledError:
                outcome.duration = time.monotonic() - began
                bus.emit(_OBS.GROUP_TASK_CANCELLED, index=index)
                raise
            except Exception as exc:
                outcome.status, outcome.error = "failed", exc
                outcome.duration = time.monotonic() - began
                bus.emit(_OBS.GROUP_TASK_FAILED, index=index, error=repr(exc))
                progress.settled(False)
                if fail_fast:
                    first_error.append(exc)
                    stop.set()
                    return
                continue
            if tokens is not None and limiter is not None:
                limiter.record(tokens)
            outcome.status, outcome.value = "completed", value
            outcome.duration = time.monotonic() - began
            bus.emit(
                _OBS.GROUP_TASK_COMPLETE, index=index, duration_ms=int(outcome.duration * 1000)
            )
            progress.settled(True)

    width = total if concurrency is None else min(concurrency, total)
    loop = asyncio.get_running_loop()
    workers = [loop.create_task(worker(), name=f"l0-{kind}-worker-{i}") for i in range(width)]
    status = "success"
    try:
        async with asyncio.timeout(time_limit):
            stopper = loop.create_task(stop.wait())
            try:
                await asyncio.wait([*workers, stopper], return_when=asyncio.FIRST_COMPLETED)
                while not stop.is_set() and not all(w.done() for w in workers):
                    await asyncio.wait([*workers, stopper], return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopper.cancel()
    except TimeoutError:
        status = "timeout"
    except BaseException:
        status = "cancelled"
        raise
    finally:
        await gather_cancel(workers)
        if first_error:
            status = "failed"
        bus.emit(_OBS.GROUP_END, status=status, duration_ms=int((time.monotonic() - start) * 1000))
    if first_error:
        raise first_error[0]
    if status == "timeout":
        for outcome in outcomes:
            if outcome.status in ("pending", "cancelled"):
                outcome.status = "cancelled"
                outcome.error = TimeoutError(f"{kind}: time_limit={time_limit!r} s passed")
        if fail_fast:
            raise TimeoutError(f"{kind}: time_limit={time_limit!r} s passed")
    return ParallelResult(outcomes, time.monotonic() - start, bus.group_id)


def _check_common(time_limit: object, on_progress: object, fail_fast: object) -> None:
    if time_limit is not None:
        check_positive("time_limit", time_limit)
    check_optional_callable("on_progress", on_progress)
    if not isinstance(fail_fast, bool):
        raise TypeError(f"fail_fast={fail_fast!r}: expected True or False")


@overload
async def parallel(
    tasks: Sequence[StructuredTask[T]],
    *,
    concurrency: int | None = None,
    fail_fast: bool = False,
    time_limit: float | None = None,
    on_progress: Callable[..., Any] | None = None,
    session_id: str | None = None,
    **run_options: Any,
) -> ParallelResult[T]: ...


@overload
async def parallel(
    tasks: Sequence[TextTask],
    *,
    concurrency: int | None = None,
    fail_fast: bool = False,
    time_limit: float | None = None,
    on_progress: Callable[..., Any] | None = None,
    session_id: str | None = None,
    **run_options: Any,
) -> ParallelResult[str]: ...


@overload
async def parallel(
    tasks: Sequence[ValueTask[T]],
    *,
    concurrency: int | None = None,
    fail_fast: bool = False,
    time_limit: float | None = None,
    on_progress: Callable[..., Any] | None = None,
    session_id: str | None = None,
    **run_options: Any,
) -> ParallelResult[T]: ...


@overload
async def parallel(
    tasks: Sequence[Callable[..., Any]],
    *,
    concurrency: int | None = None,
    fail_fast: bool = False,
    time_limit: float | None = None,
    on_progress: Callable[..., Any] | None = None,
    session_id: str | None = None,
    **run_options: Any,
) -> ParallelResult[Any]: ...


async def parallel(
    tasks: Sequence[Callable[..., Any]],
    *,
    concurrency: int | None = None,
    fail_fast: bool = False,
    time_limit: float | None = None,
    on_progress: Callable[..., Any] | None = None,
    session_id: str | None = None,
    **run_options: Any,
) -> ParallelResult[Any]:
    """Run tasks concurrently, at most ``concurrency`` at a time; results in input order.

    Args:
        tasks: Zero-argument factories (see :func:`l0.race` for the kinds accepted).
        concurrency: Most tasks running at once; ``None`` runs them all at once. Tasks start
            in input order.
        fail_fast: ``False`` (default): a failed task's error is kept in its outcome and the
            others go on. ``True``: the first error cancels every other task and is raised.
        time_limit: Seconds for the whole run; unfinished tasks are then cancelled and their
            outcomes say so (with ``fail_fast=True``, ``TimeoutError`` is raised).
        on_progress: ``(done, failed, total)``, called as each task settles.
        session_id: ``session_id`` of the run's observability events.
        **run_options: Options of :func:`l0.run` for the sessions the run starts itself;
            ``on_event`` also receives the run's own events.

    Returns:
        A :class:`ParallelResult`: ``.outcomes``, ``.values``, ``.errors`` in input order.

    Raises:
        TypeError, ValueError: bad arguments (raised before anything starts).
        Exception: with ``fail_fast=True``, the first task error.
    """
    checked = check_tasks(tasks)
    if concurrency is not None:
        check_positive("concurrency", concurrency, integer=True)
    _check_common(time_limit, on_progress, fail_fast)
    return await _fan_out(
        "parallel",
        checked,
        concurrency=concurrency,
        fail_fast=fail_fast,
        time_limit=time_limit,
        on_progress=on_progress,
        limiter=None,
        session_id=session_id,
        run_options=run_options,
    )


async def batched(
    items: Iterable[ItemT],
    handler: Callable[[ItemT], Any],
    *,
    batch_size: int = 8,
    rpm: float | None = None,
    tpm: float | None = None,
    burst: int | None = None,
    limiter: RateLimiter | None = None,
    fail_fast: bool = False,
    time_limit: float | None = None,
    on_progress: Callable[..., Any] | None = None,
    session_id: str | None = None,
    **run_options: Any,
) -> ParallelResult[Any]:
    """Run ``handler(item)`` for every item, ``batch_size`` at a time, within rate limits.

    A new item starts as soon as one finishes (a rolling window, not lock-step batches), so
    one slow item does not hold up the others.

    Args:
        items: The inputs (any iterable; it is read into a list first).
        handler: ``(item) -> task value``: a coroutine function, or a function returning an
            ``l0.Result``, a stream or an awaitable (see :func:`l0.race` for the kinds).
        batch_size: Most items in flight at once.
        rpm: Requests per minute (one per item); see :class:`l0.LocalRateLimiter`.
        tpm: Tokens per minute, from each item's reported usage.
        burst: Requests that may start at once before RPM pacing.
        limiter: Your own :class:`l0.RateLimiter` instead of ``rpm``/``tpm``/``burst``.
        fail_fast: As for :func:`parallel`.
        time_limit: As for :func:`parallel`.
        on_progress: As for :func:`parallel`.
        session_id: ``session_id`` of the run's observability events.
        **run_options: As for :func:`parallel`.

    Returns:
        A :class:`ParallelResult`, one outcome per item, in input order.
    """
    if isinstance(items, str | bytes) or not isinstance(items, Iterable):
        raise TypeError(f"items={items!r}: expected an iterable of inputs")
    values = list(items)
    if not values:
        raise ValueError("items=[]: expected at least one item")
    if not callable(handler):
        raise TypeError(f"handler={handler!r}: expected a callable taking one item")
    check_positive("batch_size", batch_size, integer=True)
    _check_common(time_limit, on_progress, fail_fast)
    if limiter is not None and not isinstance(limiter, RateLimiter):
        raise TypeError(f"limiter={limiter!r}: expected an object with acquire() and record()")
    if limiter is None and (rpm, tpm, burst) != (None, None, None):
        limiter = LocalRateLimiter(rpm=rpm, tpm=tpm, burst=burst)
    tasks = [_bind(handler, value) for value in values]
    return await _fan_out(
        "batched",
        tasks,
        concurrency=batch_size,
        fail_fast=fail_fast,
        time_limit=time_limit,
        on_progress=on_progress,
        limiter=limiter,
        session_id=session_id,
        run_options=run_options,
    )


def _bind(handler: Callable[[ItemT], Any], item: ItemT) -> Callable[[], Any]:
    def task() -> Any:
        return handler(item)

    return task
