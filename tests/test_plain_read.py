"""``read()`` on a plain session runs its first attempt on a path of its own (issue 11).

Whatever that attempt does — succeed, fail in any way, time out, be aborted — the session must
end exactly as the general run loop ends it: same text, same state, same errors. The general
loop is what iteration (``async for``) runs, so each case is run both ways and compared.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import l0
from l0 import Event, EventType
from l0.errors import AbortedError, InitialTokenTimeoutError, RetryExhaustedError
from l0.types import AttemptContext, AttemptUsage, _attempt_usage

pytestmark = pytest.mark.usefixtures("isolated_config")

FAILURES: dict[str, Callable[[], BaseException]] = {
    "network": lambda: ConnectionResetError("peer reset"),
    "model": lambda: ValueError("bad chunk"),
    "fatal": lambda: PermissionError("no"),
}

# One attempt: the items it yields, then how it ends (None: normally).
attempt_plan = st.tuples(
    st.lists(
        st.one_of(
            st.text(alphabet="ab \n", max_size=3),
            st.sampled_from(["<usage>", "<length>", "<tool>"]),
        ),
        max_size=5,
    ),
    st.sampled_from([None, "network", "model", "fatal"]),
)


def factory_of(plan: list[tuple[list[str], str | None]]) -> Callable[[], AsyncIterator[Any]]:
    attempts = iter(plan)

    async def stream() -> AsyncIterator[Any]:
        items, ending = next(attempts, ([], None))
        for item in items:
            if item == "<usage>":
                yield Event(EventType.COMPLETE, usage={"completion_tokens": 7, "prompt_tokens": 2})
            elif item == "<length>":
                yield Event(EventType.COMPLETE, data={"finish_reason": "length"})
            elif item == "<tool>":
                yield Event(EventType.TOOL_CALL, data={"id": "c1", "name": "f", "arguments": "{}"})
            else:
                yield item
        if ending is not None:
            raise FAILURES[ending]()

    return stream


def summary(result: l0.Result, outcome: object) -> dict[str, Any]:
    state = result.state
    return {
        "outcome": outcome,
        "content": state.content,
        "attempt": state.attempt,
        "fallback_index": state.fallback_index,
        "retries": (state.model_retry_count, state.network_retry_count, state.total_retries),
        "completed": state.completed,
        "aborted": state.aborted,
        "usage": state.usage,
        "finish_reason": state.finish_reason,
        "tool_calls": state.tool_calls,
        "attempts": state.attempts,
        "errors": [(e.attempt, e.fallback_index, type(e.error), e.category) for e in result.errors],
        "error": type(state.error) if state.error is not None else None,
        "ended": state.ended_at is not None,
    }


async def by_read(make: Callable[[], l0.Result]) -> dict[str, Any]:
    result = make()
    try:
        outcome: object = await result.read()
    except Exception as exc:
        outcome = type(exc)
    return summary(result, outcome)


async def by_iteration(make: Callable[[], l0.Result]) -> dict[str, Any]:
    result = make()
    try:
        async for _ in result:
            pass
        outcome: object = result.state.content
    except Exception as exc:
        outcome = type(exc)
    return summary(result, outcome)


@settings(max_examples=60, deadline=None)
@given(
    primary=st.lists(attempt_plan, min_size=1, max_size=3),
    fallback=st.lists(attempt_plan, max_size=2),
    retry_on_length=st.booleans(),
)
def test_read_ends_every_session_as_the_run_loop_does(
    primary: list[tuple[list[str], str | None]],
    fallback: list[tuple[list[str], str | None]],
    retry_on_length: bool,
) -> None:
    retry = l0.Retry(attempts=2, max_retries=3, base_delay=0, max_delay=0)

    def make() -> l0.Result:
        return l0.run(
            factory_of(primary),
            fallbacks=[factory_of(fallback)] if fallback else (),
            retry=retry,
            retry_on_length=retry_on_length,
        )

    async def both() -> tuple[dict[str, Any], dict[str, Any]]:
        return await by_read(make), await by_iteration(make)

    read, iterated = asyncio.run(both())
    assert read == iterated


async def test_a_first_attempt_that_times_out_is_retried_as_by_the_run_loop() -> None:
    calls = 0

    async def slow_then_fine() -> AsyncIterator[str]:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(5)
        yield "fine"

    result = l0.run(
        slow_then_fine,
        timeout=l0.Timeout(initial_token=0.05, inter_token=1),
        retry=l0.Retry(max_retries=1, base_delay=0, max_delay=0),
    )
    assert await result.read() == "fine"
    assert [type(e.error) for e in result.errors] == [InitialTokenTimeoutError]
    assert result.state.network_retry_count == 1
    assert [usage.outcome for usage in result.state.attempts] == ["error", "success"]


async def test_abort_during_a_plain_read_raises_aborted_and_closes_the_stream() -> None:
    closed = asyncio.Event()

    async def silent() -> AsyncIterator[str]:
        try:
            yield "a"
            await asyncio.sleep(30)
            yield "never"
        finally:
            closed.set()

    result = l0.run(silent)
    reader = asyncio.create_task(result.read())
    await asyncio.sleep(0.05)
    result.abort()
    with pytest.raises(AbortedError):
        await reader
    assert closed.is_set()
    assert result.state.aborted
    assert result.state.content == "a"


async def test_a_plain_read_cancelled_by_its_caller_closes_the_stream() -> None:
    closed = asyncio.Event()

    async def silent() -> AsyncIterator[str]:
        try:
            yield "a"
            await asyncio.sleep(30)
            yield "never"
        finally:
            closed.set()

    result = l0.run(silent)
    reader = asyncio.create_task(result.read())
    await asyncio.sleep(0.05)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    assert closed.is_set()
    assert result.state.aborted


async def test_an_aborted_session_never_starts_its_stream() -> None:
    started = False

    async def stream() -> AsyncIterator[str]:
        nonlocal started
        started = True
        yield "x"

    result = l0.run(stream)
    result.abort()
    with pytest.raises(AbortedError):
        await result.read()
    assert not started


async def test_a_plain_read_gives_a_context_to_a_factory_that_asks() -> None:
    seen: list[AttemptContext] = []

    async def stream(ctx: AttemptContext) -> AsyncIterator[str]:
        seen.append(ctx)
        yield "ok"

    assert await l0.run(stream).read() == "ok"
    assert seen == [AttemptContext(attempt=1, fallback_index=0, is_retry=False, is_fallback=False)]


async def test_zero_output_then_exhaustion_reports_every_attempt() -> None:
    async def empty() -> AsyncIterator[str]:
        for _ in ():
            yield ""

    result = l0.run(empty, retry=l0.Retry(max_retries=1, base_delay=0, max_delay=0))
    with pytest.raises(RetryExhaustedError):
        await result.read()
    assert len(result.errors) == 2
    assert result.state.error is not None


@given(
    st.tuples(
        st.integers(0, 9),
        st.integers(0, 3),
        st.sampled_from(["success", "error", "continued", "hedge_lost"]),
        st.integers(0, 10**6),
        st.integers(0, 10**6),
        st.none() | st.integers(0, 10**6),
        st.booleans(),
        st.integers(0, 10**7),
    )
)
def test_the_fast_attempt_usage_equals_the_dataclass(values: tuple[Any, ...]) -> None:
    fast, made = _attempt_usage(*values), AttemptUsage(*values)
    assert fast == made
    assert hash(fast) == hash(made)
    assert repr(fast) == repr(made)
    with pytest.raises(AttributeError):
        fast.outcome = "changed"  # type: ignore[misc]
