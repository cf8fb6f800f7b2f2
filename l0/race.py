"""``l0.race``: run tasks at once, keep the first valid answer, cancel the rest.

Two modes:

* :func:`race` waits for the first contender that *completes validly* (its session succeeded
  after its own retries and fallbacks, its guardrails passed, and ``validate=`` accepted the
  value), then cancels every other contender and closes its provider connection.
* :func:`race_stream` streams the first contender that delivers a *token*; the others are
  cancelled at once. If that leader then fails for good, an in-band ``reset`` event withdraws
  its text and the race starts again among the contenders that have not failed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

from l0._first_token import FirstToken
from l0._group import (
    AllTasksFailedError,
    GroupBus,
    StructuredTask,
    TaskOutcome,
    TextTask,
    ValueTask,
    check_positive,
    check_tasks,
    check_validate,
    child_scope,
    gather_cancel,
    run_task,
    split_options,
    task_result,
    validate_value,
)
from l0.events import ObservabilityEventType
from l0.types import Event, EventType

__all__ = ["RaceResult", "RaceStream", "race", "race_stream"]

T = TypeVar("T")
_OBS = ObservabilityEventType
_TOKEN = EventType.TOKEN
_RESET = EventType.RESET


@dataclass(frozen=True, slots=True)
class RaceResult(Generic[T]):
    """The outcome of :func:`race`.

    Attributes:
        value: The winner's value: the text for streams, ``.data`` for ``l0.structured``
            tasks, the return value for coroutine factories.
        winner: Index of the winning task.
        elapsed: Seconds from the start of the race to the win.
        outcomes: One :class:`~l0.TaskOutcome` per task, in input order: the winner is
            ``"won"``; the others ``"cancelled"``, ``"failed"`` or ``"invalid"``, with the error.
        group_id: The race's id; child sessions carry it as ``parent_id``.
    """

    value: T
    winner: int
    elapsed: float
    outcomes: list[TaskOutcome]
    group_id: str


def _check_time_limit(time_limit: object) -> None:
    if time_limit is not None:
        check_positive("time_limit", time_limit)


@overload
async def race(
    tasks: Sequence[StructuredTask[T]],
    *,
    validate: Any = None,
    time_limit: float | None = None,
    session_id: str | None = None,
    **run_options: Any,
) -> RaceResult[T]: ...


@overload
async def race(
    tasks: Sequence[TextTask],
    *,
    validate: Any = None,
    time_limit: float | None = None,
    session_id: str | None = None,
    **run_options: Any,
) -> RaceResult[str]: ...


@overload
async def race(
    tasks: Sequence[ValueTask[T]],
    *,
    validate: Any = None,
    time_limit: float | None = None,
    session_id: str | None = None,
    **run_options: Any,
) -> RaceResult[T]: ...


@overload
async def race(
    tasks: Sequence[Callable[..., Any]],
    *,
    validate: Any = None,
    time_limit: float | None = None,
    session_id: str | None = None,
    **run_options: Any,
) -> RaceResult[Any]: ...


async def race(
    tasks: Sequence[Callable[..., Any]],
    *,
    validate: Any = None,
    time_limit: float | None = None,
    session_id: str | None = None,
    **run_options: Any,
) -> RaceResult[Any]:
    """Start every task at once; the first to complete validly wins, the others are cancelled.

    Args:
        tasks: Zero-argument factories: ``l0.run`` stream factories (or ``lambda:
            l0.run(...)``), wrapped-client calls, ``lambda: l0.structured(Model, ...)``, or
            plain coroutine factories.
        validate: A predicate ``(value) -> bool`` or a pydantic type; a contender whose value
            it rejects is ``"invalid"`` and does not win.
        time_limit: Seconds for the whole race; when it passes, every contender is cancelled and
            ``TimeoutError`` is raised.
        session_id: ``session_id`` of the race's observability events.
        **run_options: Options of :func:`l0.run` for the sessions the race starts itself (raw
            stream factories), e.g. ``retry=``, ``guardrails=``; ``on_event`` also receives
            the race's own events, ``plugins`` chooses the exporters.

    Returns:
        A :class:`RaceResult`: the value, the winner's index, the time to win, each outcome.

    Raises:
        AllTasksFailedError: no contender completed validly; ``.errors`` has each one's error.
        TimeoutError: ``time_limit`` passed first.
        TypeError, ValueError: bad arguments (raised before anything starts).
    """
    checked = check_tasks(tasks)
    check_validate(validate)
    _check_time_limit(time_limit)
    pm, on_event, options = split_options(run_options, session_id)
    bus = GroupBus("race", pm, on_event, session_id)
    outcomes = [TaskOutcome(i) for i in range(len(checked))]
    start = time.monotonic()
    bus.emit(_OBS.GROUP_START, task_count=len(checked), mode="complete")
    won: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    remaining = len(checked)

    async def contender(index: int) -> None:
        nonlocal remaining
        outcome = outcomes[index]
        began = time.monotonic()
        try:
            with child_scope(bus.group_id):
                value, _ = await run_task(checked[index], options)
            reason = validate_value(value, validate)
        except asyncio.CancelledError:
            outcome.duration = time.monotonic() - began
            outcome.status = "cancelled"
            raise
        except Exception as exc:
            outcome.status, outcome.error = "failed", exc
            reason = None
        else:
            if reason is not None:
                outcome.status, outcome.value = "invalid", value
                outcome.error = ValueError(reason)
            else:
                outcome.duration = time.monotonic() - began
                ms = int(outcome.duration * 1000)
                bus.emit(_OBS.GROUP_TASK_COMPLETE, index=index, duration_ms=ms)
                if won.done():
                    outcome.status, outcome.value = "completed", value
                else:
                    outcome.status, outcome.value = "won", value
                    bus.emit(_OBS.GROUP_WINNER, index=index, elapsed_ms=_ms(start))
                    won.set_result(index)
        outcome.duration = time.monotonic() - began
        if outcome.status in ("failed", "invalid"):
            bus.emit(_OBS.GROUP_TASK_FAILED, index=index, error=repr(outcome.error))
        remaining -= 1
        if remaining == 0 and not won.done():
            won.set_result(-1)

    running = [
        asyncio.get_running_loop().create_task(contender(i), name=f"l0-race-{i}")
        for i in range(len(checked))
    ]
    stopped: str | None = None
    try:
        async with asyncio.timeout(time_limit):
            winner = await asyncio.shield(won)
    except TimeoutError:
        stopped = "timeout"
    except BaseException:
        stopped = "cancelled"
        raise
    finally:
        await gather_cancel(running)
        for i, outcome in enumerate(outcomes):
            if outcome.status == "cancelled":
                bus.emit(_OBS.GROUP_TASK_CANCELLED, index=i)
        if stopped is not None:
            bus.emit(_OBS.GROUP_END, status=stopped, duration_ms=_ms(start))
    if stopped is not None:
        raise TimeoutError(f"race: no contender won within time_limit={time_limit!r} s")
    elapsed = time.monotonic() - start
    if winner < 0:
        bus.emit(_OBS.GROUP_END, status="failed", duration_ms=_ms(start))
        raise AllTasksFailedError(
            f"race: all {len(checked)} contenders failed: "
            + "; ".join(f"#{o.index} {o.status}: {o.error!r}" for o in outcomes),
            outcomes=outcomes,
        )
    bus.emit(_OBS.GROUP_END, status="success", duration_ms=_ms(start))
    return RaceResult(outcomes[winner].value, winner, elapsed, outcomes, bus.group_id)


def _ms(start: float) -> int:
    return int((time.monotonic() - start) * 1000)


class RaceStream:
    """The stream of :func:`race_stream`: iterate it once for the leader's events.

    Attributes:
        leader: Index of the task being streamed (``None`` before the first token).
        outcomes: One :class:`~l0.TaskOutcome` per task, updated as the race goes.
        group_id: The race's id; child sessions carry it as ``parent_id``.
    """

    __slots__ = ("_bus", "_options", "_started", "_tasks", "group_id", "leader", "outcomes")

    def __init__(self, tasks: list[Callable[..., Any]], options: dict[str, Any], bus: GroupBus):
        self._tasks = tasks
        self._options = options
        self._bus = bus
        self._started = False
        self.group_id = bus.group_id
        self.leader: int | None = None
        self.outcomes = [TaskOutcome(i) for i in range(len(tasks))]

    def __aiter__(self) -> AsyncIterator[Event]:
        if self._started:
            raise RuntimeError("a race stream can be iterated once")
        self._started = True
        return self._events()

    async def read(self) -> str:
        """Iterate to the end and return the winner's text."""
        parts: list[str] = []
        async for event in self:
            if event.is_token and event.text:
                parts.append(event.text)
            elif event.is_reset:
                kept = int(event.data.get("kept", 0)) if event.data else 0
                text = "".join(parts)[:kept]
                parts = [text]
        return "".join(parts)

    async def _events(self) -> AsyncIterator[Event]:
        bus = self._bus
        start = time.monotonic()
        bus.emit(_OBS.GROUP_START, task_count=len(self._tasks), mode="stream")
        eligible = list(range(len(self._tasks)))
        status = "failed"
        try:
            while eligible:
                first = FirstToken()
                order: list[int] = []
                try:
                    with child_scope(bus.group_id):
                        for i in eligible:
                            try:
                                result = task_result(self._tasks[i], self._options)
                            except Exception as exc:
                                self._fail(i, exc, start)
                                continue
                            first.add(result)
                            order.append(i)
                    if not order:
                        break
                    try:
                        lead = await first.lead()
                    except AllTasksFailedError:
                        for slot, i in enumerate(order):
                            self._fail(i, first.errors()[slot], start)
                        break
                    leader = order[lead.index]
                    for slot, i in enumerate(order):
                        if slot == lead.index:
                            continue
                        if first.failed(slot):
                            self._fail(i, first.errors()[slot], start)
                        else:
                            self.outcomes[i].status = "cancelled"
                            bus.emit(_OBS.GROUP_TASK_CANCELLED, index=i)
                    self.leader = leader
                    bus.emit(_OBS.GROUP_WINNER, index=leader, elapsed_ms=_ms(start))
                    shown: list[str] = []
                    add = shown.append
                    try:
                        # The leader's head (its events up to the first token) first, then its
                        # own stream, read here directly: no hand-off per event.
                        for event in lead.head:
                            _note(shown, event)
                            yield event
                        async for event in lead.iterator:
                            kind = event.type
                            if kind is _TOKEN:
                                add(event.text or "")
                            elif kind is _RESET:
                                _note(shown, event)
                            yield event
                    except Exception as exc:
                        self._fail(leader, exc, start)
                        eligible = [i for i in eligible if self.outcomes[i].status == "cancelled"]
                        for i in eligible:
                            self.outcomes[i].status = "pending"
                        # The consumer has shown the failed leader's text: withdraw it.
                        yield Event(
                            _RESET,
                            data={"withdrawn": "".join(shown), "kept": 0, "reason": repr(exc)},
                        )
                        continue
                    outcome = self.outcomes[leader]
                    outcome.status, outcome.value = "won", lead.result.state.content
                    outcome.duration = time.monotonic() - start
                    bus.emit(_OBS.GROUP_TASK_COMPLETE, index=leader, duration_ms=_ms(start))
                    status = "success"
                    return
                finally:
                    await first.close()
            raise AllTasksFailedError(
                f"race_stream: all {len(self._tasks)} contenders failed: "
                + "; ".join(f"#{o.index}: {o.error!r}" for o in self.outcomes),
                outcomes=self.outcomes,
            )
        except (asyncio.CancelledError, GeneratorExit):
            status = "cancelled"
            raise
        finally:
            bus.emit(_OBS.GROUP_END, status=status, duration_ms=_ms(start))

    def _fail(self, index: int, error: BaseException | None, start: float) -> None:
        outcome = self.outcomes[index]
        outcome.status, outcome.error = "failed", error
        outcome.duration = time.monotonic() - start
        self._bus.emit(_OBS.GROUP_TASK_FAILED, index=index, error=repr(error))


def _note(shown: list[str], event: Event) -> None:
    # What the consumer has on screen: tokens add, a reset keeps only its ``kept`` prefix.
    if event.type is _TOKEN:
        shown.append(event.text or "")
    elif event.type is _RESET and event.data:
        kept = int(event.data.get("kept", 0))
        shown[:] = ["".join(shown)[:kept]]


def race_stream(
    tasks: Sequence[Callable[..., Any]],
    *,
    session_id: str | None = None,
    **run_options: Any,
) -> RaceStream:
    """Stream the first task to deliver a token; cancel the others at once.

    If the streamed leader fails for good (after its own retries and fallbacks), a ``reset``
    event withdraws the text it delivered (``data["withdrawn"]``) and the race starts again
    among the tasks that did not fail (their factories are called again).

    Args:
        tasks: Stream tasks: ``l0.run`` stream factories, ``lambda: l0.run(...)``,
            wrapped-client calls or raw SDK stream calls.
        session_id: ``session_id`` of the race's observability events.
        **run_options: Options of :func:`l0.run` for sessions the race starts itself.

    Returns:
        A :class:`RaceStream` to iterate (stream events) or ``await .read()``.

    Raises:
        TypeError, ValueError: bad arguments (raised here, before anything starts).
    """
    checked = check_tasks(tasks)
    pm, on_event, options = split_options(run_options, session_id)
    return RaceStream(checked, options, GroupBus("race", pm, on_event, session_id))
