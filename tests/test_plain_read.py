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
from l0.types import AttemptContext, AttemptUsage, State

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


def silent_after_a(closed: asyncio.Event) -> Callable[[], AsyncIterator[str]]:
    """A stream that yields "a" and then waits; ``closed`` is set when it is closed."""

    async def stream() -> AsyncIterator[str]:
        try:
            yield "a"
            await asyncio.sleep(30)
            yield "never"
        finally:
            closed.set()

    return stream


@pytest.mark.parametrize("stop", ["abort", "cancel"])
async def test_a_plain_read_stopped_while_waiting_closes_the_stream(stop: str) -> None:
    closed = asyncio.Event()
    result = l0.run(silent_after_a(closed))
    reader = asyncio.create_task(result.read())
    await asyncio.sleep(0.05)
    if stop == "abort":
        result.abort()
    else:
        reader.cancel()
    with pytest.raises(AbortedError if stop == "abort" else asyncio.CancelledError):
        await reader
    assert closed.is_set()
    assert result.state.aborted
    assert result.state.content == "a"


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


async def test_attempts_read_as_usage_objects_however_often_and_in_snapshots() -> None:
    result = l0.run(
        factory_of([(["ab"], "network"), (["abc"], None)]),
        retry=l0.Retry(max_retries=1, base_delay=0, max_delay=0),
    )
    assert await result.read() == "abc"
    state = result.state
    rows = state.attempts
    assert all(type(row) is AttemptUsage for row in rows)
    assert [(r.attempt, r.outcome, r.chars) for r in rows] == [(1, "error", 2), (2, "success", 3)]
    assert state.attempts is rows  # one list, made into objects once
    assert state.snapshot().attempts == rows
    assert state.tokens_paid == sum(r.completion_tokens for r in rows)
    assert "_usage_rows" not in repr(State())
