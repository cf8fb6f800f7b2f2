"""``l0.parallel`` and ``l0.batched`` (no network)."""

from __future__ import annotations

import asyncio
from typing import Any, assert_type

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

import l0
from l0.events import ObservabilityEvent, ObservabilityEventType
from tests.group_helpers import count, eventually


class Boom(Exception):
    pass


class Tracker:
    """Coroutine tasks that count how many run at once and which are still running."""

    def __init__(self) -> None:
        self.running: set[int] = set()
        self.peak = 0

    async def task(self, index: int, delay: float, fail: bool) -> int:
        self.running.add(index)
        self.peak = max(self.peak, len(self.running))
        try:
            await asyncio.sleep(delay)
            if fail:
                raise Boom(index)
            return index * 10
        finally:
            self.running.discard(index)

    def factory(self, index: int, delay: float, fail: bool = False) -> Any:
        return lambda: self.task(index, delay, fail)


async def test_results_in_input_order_with_errors_collected() -> None:
    tracker = Tracker()
    delays = [0.05, 0.01, 0.03, 0.0, 0.02, 0.04]
    progress: list[tuple[int, int, int]] = []
    result = await l0.parallel(
        [tracker.factory(i, d, fail=i in (1, 4)) for i, d in enumerate(delays)],
        concurrency=2,
        on_progress=lambda *counts: progress.append(counts),
    )
    assert result.values == [0, None, 20, 30, None, 50]
    assert [type(e).__name__ if e else None for e in result.errors] == [
        None,
        "Boom",
        None,
        None,
        "Boom",
        None,
    ]
    assert tracker.peak == 2
    assert (result.succeeded, result.failed, result.ok) == (4, 2, False)
    assert progress[-1] == (4, 2, 6)
    with pytest.raises(Boom):
        result.unwrap()


async def test_values_are_typed() -> None:
    async def job(i: int) -> int:
        return i

    result = await l0.parallel([lambda: job(1), lambda: job(2)])
    assert_type(result, l0.ParallelResult[int])
    assert result.unwrap() == [1, 2]


async def test_fail_fast_cancels_the_rest_and_raises() -> None:
    tracker = Tracker()
    with pytest.raises(Boom):
        await l0.parallel(
            [tracker.factory(0, 0.01, fail=True), tracker.factory(1, 5.0), tracker.factory(2, 5.0)],
            fail_fast=True,
        )
    assert tracker.running == set()


async def test_time_limit_marks_unfinished_tasks_cancelled() -> None:
    tracker = Tracker()
    result = await l0.parallel(
        [tracker.factory(0, 0.0), tracker.factory(1, 5.0), tracker.factory(2, 5.0)],
        concurrency=2,
        time_limit=0.2,
    )
    assert [o.status for o in result.outcomes] == ["completed", "cancelled", "cancelled"]
    assert isinstance(result.errors[1], TimeoutError)
    assert tracker.running == set()
    with pytest.raises(TimeoutError):
        await l0.parallel([tracker.factory(0, 5.0)], time_limit=0.05, fail_fast=True)


async def test_cancelling_the_caller_leaves_nothing_running() -> None:
    tracker = Tracker()
    run = asyncio.ensure_future(
        l0.parallel([tracker.factory(i, 5.0) for i in range(5)], concurrency=3)
    )
    await eventually(lambda: len(tracker.running) == 3)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert tracker.running == set()


async def test_progress_events_and_parent_ids() -> None:
    seen: list[ObservabilityEvent] = []

    async def words() -> Any:
        yield "hi"

    result = await l0.parallel([words, words, words], concurrency=2, on_event=seen.append)
    await eventually(
        lambda: (
            count(seen, ObservabilityEventType.GROUP_END) == 1
            and count(seen, ObservabilityEventType.SESSION_END) == 3
        )
    )
    assert result.values == ["hi", "hi", "hi"]
    progress = [e for e in seen if e.type is ObservabilityEventType.GROUP_PROGRESS]
    assert [(e["done"], e["failed"], e["total"]) for e in progress] == [
        (1, 0, 3),
        (2, 0, 3),
        (3, 0, 3),
    ]
    child_starts = [e for e in seen if e.type is ObservabilityEventType.SESSION_START]
    assert len(child_starts) == 3
    assert {e.parent_id for e in child_starts} == {result.group_id}


async def test_batched_runs_the_handler_per_item_in_order() -> None:
    tracker = Tracker()

    async def handler(item: int) -> int:
        return await tracker.task(item, 0.01 * (5 - item), item == 3)

    result = await l0.batched(range(6), handler, batch_size=3)
    assert result.values == [0, 10, 20, None, 40, 50]
    assert tracker.peak == 3
    assert isinstance(result.errors[3], Boom)


async def test_batched_with_an_rpm_limit_spaces_the_starts() -> None:
    loop = asyncio.get_running_loop()
    starts: list[float] = []

    async def handler(item: int) -> int:
        starts.append(loop.time())
        return item

    result = await l0.batched(range(4), handler, batch_size=4, rpm=1200, burst=1)
    assert result.values == [0, 1, 2, 3]
    # 1200 rpm = one every 0.05 s after a burst of one: four starts span at least 0.15 s.
    assert starts[-1] - starts[0] >= 0.15 - 0.01


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    plan=st.lists(st.tuples(st.integers(0, 20), st.booleans()), min_size=1, max_size=12),
    concurrency=st.integers(1, 5),
    fail_fast=st.booleans(),
)
def test_property_order_kept_and_nothing_left_running(
    plan: list[tuple[int, bool]], concurrency: int, fail_fast: bool
) -> None:
    async def scenario() -> None:
        tracker = Tracker()
        tasks = [tracker.factory(i, ms / 1000, fail) for i, (ms, fail) in enumerate(plan)]
        try:
            result = await l0.parallel(tasks, concurrency=concurrency, fail_fast=fail_fast)
        except Boom:
            assert fail_fast
            assert any(fail for _, fail in plan)
        else:
            assert result.values == [None if fail else i * 10 for i, (_, fail) in enumerate(plan)]
            assert [isinstance(e, Boom) for e in result.errors] == [f for _, f in plan]
        assert tracker.running == set()
        assert tracker.peak <= concurrency
        leftover = [
            t
            for t in asyncio.all_tasks()
            if t is not asyncio.current_task() and t.get_name().startswith("l0-")
        ]
        assert leftover == []

    asyncio.run(scenario())


# Typed as Any: these calls are wrong on purpose.
PARALLEL: Any = l0.parallel
BATCHED: Any = l0.batched


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: PARALLEL([]), ValueError, r"tasks=\[\]"),
        (lambda: PARALLEL([print], concurrency=0), ValueError, "concurrency=0"),
        (lambda: PARALLEL([print], concurrency=1.5), ValueError, "concurrency=1.5"),
        (lambda: PARALLEL([print], on_progress=3), TypeError, "on_progress=3"),
        (lambda: PARALLEL([print], fail_fast=1), TypeError, "fail_fast=1"),
        (lambda: PARALLEL(["x"]), TypeError, r"tasks\[0\]=str"),
        (lambda: BATCHED([1], print, batch_size=0), ValueError, "batch_size=0"),
        (lambda: BATCHED([], print), ValueError, r"items=\[\]"),
        (lambda: BATCHED([1], "f"), TypeError, "handler='f'"),
        (lambda: BATCHED([1], print, rpm=0), ValueError, "rpm=0"),
        (lambda: BATCHED([1], print, tpm=-5), ValueError, "tpm=-5"),
        (lambda: BATCHED([1], print, rpm="fast"), TypeError, "rpm='fast'"),
        (lambda: BATCHED([1], print, rpm=float("nan")), ValueError, "rpm=nan"),
    ],
)
async def test_bad_input(call: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        await call()


async def test_coroutine_tasks_with_a_network_error_are_retried_others_are_not() -> None:
    calls = {"flaky": 0, "buggy": 0}

    async def flaky() -> str:
        calls["flaky"] += 1
        if calls["flaky"] == 1:
            raise ConnectionResetError("connection reset by peer")
        return "recovered"

    async def buggy() -> str:
        calls["buggy"] += 1
        raise ValueError("a bug is not retried")

    result = await l0.parallel([flaky, buggy], retry=l0.Retry(base_delay=0.0, max_delay=0.0))
    assert result.values == ["recovered", None]
    assert isinstance(result.errors[1], ValueError)
    assert calls == {"flaky": 2, "buggy": 1}
