"""``l0.Pool`` and the rate limiters (no network)."""

from __future__ import annotations

import asyncio
from typing import Any, assert_type

import pytest

import l0
from l0.events import ObservabilityEvent, ObservabilityEventType
from tests.group_helpers import count, eventually


async def sleepy(value: Any, delay: float, box: dict[str, int] | None = None) -> Any:
    if box is not None:
        box["now"] += 1
        box["peak"] = max(box["peak"], box["now"])
    try:
        await asyncio.sleep(delay)
    finally:
        if box is not None:
            box["now"] -= 1
    return value


async def test_submit_map_drain_with_a_concurrency_cap() -> None:
    box = {"now": 0, "peak": 0}
    async with l0.Pool(concurrency=2) as pool:

        async def one() -> str:
            return str(await sleepy("one", 0.01, box))

        future = pool.submit(one)
        assert_type(future, asyncio.Future[str])
        outcomes = await pool.map([lambda i=i: sleepy(i, 0.02, box) for i in range(5)])
        assert [o.value for o in outcomes] == [0, 1, 2, 3, 4]
        assert await future == "one"
        await pool.drain()
        assert (pool.submitted, pool.done, pool.failed, pool.in_flight) == (6, 6, 0, 0)
    assert box["peak"] == 2


async def test_errors_reach_the_future_and_the_outcome() -> None:
    async def bad() -> None:
        raise KeyError("x")

    async with l0.Pool() as pool:
        with pytest.raises(KeyError):
            await pool.submit(bad)
        (outcome,) = await pool.map([bad])
        assert outcome.status == "failed"
        assert isinstance(outcome.error, KeyError)
    assert pool.failed == 2


async def test_closed_pool_refuses_work_and_cancel_stops_running_tasks() -> None:
    box = {"now": 0, "peak": 0}
    pool = l0.Pool(concurrency=3)
    futures = [pool.submit(lambda: sleepy(1, 5.0, box)) for _ in range(3)]
    await eventually(lambda: box["now"] == 3)
    await pool.close(cancel=True)
    assert box["now"] == 0
    assert all(f.cancelled() for f in futures)
    with pytest.raises(RuntimeError, match="closed"):
        pool.submit(lambda: sleepy(1, 0))


async def test_leaving_the_block_with_an_error_cancels_everything() -> None:
    box = {"now": 0, "peak": 0}

    async def body() -> None:
        async with l0.Pool(concurrency=2) as pool:
            pool.submit(lambda: sleepy(1, 5.0, box))
            await eventually(lambda: box["now"] == 1)
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        await body()
    assert box["now"] == 0


async def test_pool_events() -> None:
    seen: list[ObservabilityEvent] = []
    async with l0.Pool(on_event=seen.append) as pool:
        await pool.submit(lambda: sleepy(1, 0))
    await eventually(lambda: count(seen, ObservabilityEventType.GROUP_END) == 1)
    kinds = [e.type for e in seen]
    assert kinds == [
        ObservabilityEventType.GROUP_START,
        ObservabilityEventType.GROUP_TASK_COMPLETE,
        ObservabilityEventType.GROUP_PROGRESS,
        ObservabilityEventType.GROUP_END,
    ]
    assert {e["kind"] for e in seen} == {"pool"}


async def test_local_limiter_request_bucket() -> None:
    limiter = l0.LocalRateLimiter(rpm=600, burst=3)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(3):
        await limiter.acquire()
    assert loop.time() - start < 0.05 + 0.1  # the burst is free
    await limiter.acquire()
    assert loop.time() - start >= 0.1 - 0.01  # then one per 0.1 s


async def test_local_limiter_token_budget_blocks_while_in_debt() -> None:
    limiter = l0.LocalRateLimiter(tpm=600)  # 10 tokens per second
    loop = asyncio.get_running_loop()
    await limiter.acquire()
    limiter.record(602)  # 2 tokens over the budget: 0.2 s to pay back
    start = loop.time()
    await limiter.acquire()
    assert loop.time() - start >= 0.2 - 0.02


async def test_custom_limiter_is_used() -> None:
    class Counting:
        def __init__(self) -> None:
            self.acquired = 0
            self.recorded: list[int] = []

        async def acquire(self) -> None:
            self.acquired += 1

        def record(self, tokens: int) -> None:
            self.recorded.append(tokens)

    limiter = Counting()
    async with l0.Pool(limiter=limiter) as pool:
        await pool.map([lambda: sleepy(1, 0), lambda: sleepy(2, 0)])
    assert limiter.acquired == 2
    assert limiter.recorded == []  # coroutine tasks report no usage


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"concurrency": 0}, ValueError, "concurrency=0"),
        ({"concurrency": True}, TypeError, "concurrency=True"),
        ({"rpm": 0}, ValueError, "rpm=0"),
        ({"tpm": "many"}, TypeError, "tpm='many'"),
        ({"burst": 0}, ValueError, "burst=0"),
        ({"limiter": object()}, TypeError, "limiter="),
        ({"limiter": l0.LocalRateLimiter(rpm=1), "rpm": 5}, ValueError, "not both"),
    ],
)
def test_bad_pool_arguments(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        l0.Pool(**kwargs)


async def test_bad_submit() -> None:
    async with l0.Pool() as pool:
        with pytest.raises(TypeError, match="task=3"):
            pool.submit(3)  # type: ignore[call-overload]
        with pytest.raises(ValueError, match=r"tasks=\[\]"):
            await pool.map([])
