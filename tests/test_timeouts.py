"""Initial-token and inter-token timeouts: accuracy, retry, closing, defaults."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

import l0
from l0.errors import InitialTokenTimeoutError, InterTokenTimeoutError
from l0.plugins import L0PluginManager
from l0.timeout import DEFAULT_INITIAL_TOKEN, DEFAULT_INTER_TOKEN
from tests.runtime_helpers import TEXT, TOKENS, Fault, Script

NO_RETRY = l0.Retry(max_retries=0, base_delay=0)
TOLERANCE = 0.05


@pytest.fixture
def pm() -> L0PluginManager:
    return l0.build_plugin_manager(entry_points=False)


async def _timed_failure(result: l0.Result) -> tuple[float, BaseException]:
    start = time.monotonic()
    with pytest.raises(l0.RetryExhaustedError) as info:
        await result.read()
    return time.monotonic() - start, info.value.last_error


@pytest.mark.parametrize("limit", [0.1, 0.25])
async def test_initial_token_timeout_fires_on_time(pm: L0PluginManager, limit: float) -> None:
    script = Script([Fault("stall", 0)])
    timeouts: list[tuple[str, int]] = []
    result = l0.run(
        script.factory,
        plugins=pm,
        retry=NO_RETRY,
        timeout=l0.Timeout(initial_token=limit, inter_token=5),
        on_timeout=lambda kind, ms: timeouts.append((kind, ms)),
    )
    elapsed, error = await _timed_failure(result)
    assert isinstance(error, InitialTokenTimeoutError)
    assert limit <= elapsed < limit + TOLERANCE
    assert script.closed == 1
    await result.wait_callbacks()
    assert timeouts[0][0] == "initial"
    assert abs(timeouts[0][1] - limit * 1000) < TOLERANCE * 1000


async def test_initial_timeout_covers_a_slow_factory(pm: L0PluginManager) -> None:
    """A provider slow to send headers: the factory's coroutine itself hangs."""
    cancelled = asyncio.Event()

    async def slow_connect() -> AsyncIterator[str]:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("unreachable")

    result = l0.run(
        slow_connect, plugins=pm, retry=NO_RETRY, timeout=l0.Timeout(initial_token=0.15)
    )
    elapsed, error = await _timed_failure(result)
    assert isinstance(error, InitialTokenTimeoutError)
    assert 0.15 <= elapsed < 0.15 + TOLERANCE
    assert cancelled.is_set()


@pytest.mark.parametrize("limit", [0.1, 0.3])
async def test_inter_token_timeout_fires_on_time(pm: L0PluginManager, limit: float) -> None:
    script = Script([Fault("stall", 3)])
    result = l0.run(
        script.factory,
        plugins=pm,
        retry=NO_RETRY,
        timeout=l0.Timeout(initial_token=5, inter_token=limit),
    )
    start = time.monotonic()
    with pytest.raises(l0.RetryExhaustedError) as info:
        await result.read()
    elapsed = time.monotonic() - start
    error = info.value.last_error
    assert isinstance(error, InterTokenTimeoutError)
    assert limit <= error.elapsed < limit + TOLERANCE
    assert limit <= elapsed < limit + TOLERANCE + 0.05
    assert script.closed == 1


async def test_timeout_is_retried_and_the_retry_succeeds(pm: L0PluginManager) -> None:
    script = Script([Fault("stall", 2), Fault("stall", 0)])
    result = l0.run(
        script.factory,
        plugins=pm,
        retry=l0.Retry(base_delay=0, attempts=0),
        timeout=l0.Timeout(initial_token=0.1, inter_token=0.1),
    )
    assert await result.read() == TEXT
    assert script.calls == 3
    assert result.state.network_retry_count == 2
    assert result.state.model_retry_count == 0


async def test_steady_slow_tokens_do_not_time_out(pm: L0PluginManager) -> None:
    async def slow() -> AsyncIterator[str]:
        for token in TOKENS:
            await asyncio.sleep(0.06)
            yield token

    result = l0.run(
        slow, plugins=pm, retry=NO_RETRY, timeout=l0.Timeout(initial_token=0.1, inter_token=0.1)
    )
    assert await result.read() == TEXT


READ_PATHS = {
    "plain read": {},
    "read with checks": {"guardrails": [l0.json_rule()], "check_intervals": {"guardrails": 1}},
}


@pytest.mark.parametrize("path", READ_PATHS)
async def test_reads_without_a_clock_per_token_still_time_out_on_time(
    pm: L0PluginManager, path: str
) -> None:
    """``read()`` skips the clock per token; a gap is still never judged longer than it was.

    Bursts of tokens, each burst just inside the limit after the previous one, for several
    limits in all, then silence: the timeout must come no earlier than the limit after the last
    token, and at most the timer's look interval (limit / 16) plus scheduling later.
    """
    limit = 0.2
    last_token: list[float] = []

    async def bursts() -> AsyncIterator[str]:
        for _ in range(6):
            for _ in range(50):
                yield "tok "
            last_token.append(time.monotonic())
            await asyncio.sleep(limit * 0.7)
        for _ in range(50):
            yield "end "
        last_token.append(time.monotonic())
        await asyncio.sleep(3600)
        yield "never"

    result = l0.run(
        bursts,
        plugins=pm,
        retry=NO_RETRY,
        timeout=l0.Timeout(initial_token=1, inter_token=limit),
        **READ_PATHS[path],  # type: ignore[arg-type]
    )
    with pytest.raises(l0.RetryExhaustedError) as info:
        await result.read()
    fired = time.monotonic() - last_token[-1]
    assert len(last_token) == 7  # every burst came: none of the 0.7 * limit gaps timed out
    assert isinstance(info.value.last_error, InterTokenTimeoutError)
    assert limit <= fired < limit * (1 + 1 / 16) + TOLERANCE
    assert info.value.last_error.elapsed >= limit


async def test_slow_consumer_does_not_count_as_a_stall(pm: L0PluginManager) -> None:
    result = l0.run(
        lambda: Script([Fault()]).factory(),
        plugins=pm,
        retry=NO_RETRY,
        timeout=l0.Timeout(initial_token=0.1, inter_token=0.1),
    )
    text = ""
    async for event in result:
        if event.is_token:
            text += event.text or ""
            await asyncio.sleep(0.15)  # longer than inter_token, but it is our time, not theirs
    assert text == TEXT


async def test_timeouts_can_be_turned_off(pm: L0PluginManager) -> None:
    async def pause() -> AsyncIterator[str]:
        await asyncio.sleep(0.15)
        yield "late"

    result = l0.run(
        pause, plugins=pm, retry=NO_RETRY, timeout=l0.Timeout(initial_token=None, inter_token=None)
    )
    assert await result.read() == "late"


def test_protection_is_on_by_default() -> None:
    assert l0.Timeout() == l0.Timeout(DEFAULT_INITIAL_TOKEN, DEFAULT_INTER_TOKEN)
    assert DEFAULT_INITIAL_TOKEN is not None
    assert DEFAULT_INTER_TOKEN is not None
    result = l0.run(lambda: Script([]).factory())
    assert result._session._opts.timeout == l0.Timeout()
    assert result._session._opts.retry.max_retries > 0
