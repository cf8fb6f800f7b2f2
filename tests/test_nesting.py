"""An ``l0.Result`` used as the stream of another ``l0.run``: the inner one recovers first."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import l0
from tests.runtime_helpers import TEXT, Fault, Script, consume

FAST = l0.Retry(base_delay=0, max_delay=0)


def drop_at(k: int) -> Fault:
    return Fault("raise", k, ConnectionResetError("connection reset by peer"))


async def test_inner_retry_is_not_repeated_by_the_outer_session() -> None:
    inner_script = Script([drop_at(3)])
    outer_calls = 0

    def inner() -> l0.Result:
        nonlocal outer_calls
        outer_calls += 1
        return l0.run(inner_script.factory, retry=FAST)

    outer = l0.run(inner, retry=FAST)
    assert await outer.read() == TEXT
    assert outer_calls == 1
    assert inner_script.calls == 2
    assert outer.state.attempt == 1
    assert outer.state.content == TEXT


async def test_inner_reset_is_applied_to_the_outer_content_and_passed_on() -> None:
    script = Script([drop_at(4), drop_at(2)])
    outer = l0.run(lambda: l0.run(script.factory, retry=FAST), retry=FAST)
    shown, _ = await consume(outer)
    assert shown == TEXT
    assert outer.state.content == TEXT
    assert outer.state.token_count == len(TEXT.split(" ")) + 1  # six tokens, once each


async def test_outer_guardrails_restart_after_an_inner_reset() -> None:
    # The first inner attempt streams a half JSON object and drops; the retry sends a whole
    # one. Had the outer json rule kept its state, it would see '{"a": {"a": 1}' — unbalanced.
    tokens = ['{"a": ', "1}"]
    script = Script([drop_at(1)], tokens=tokens)
    outer = l0.run(
        lambda: l0.run(script.factory, retry=FAST),
        retry=l0.Retry(attempts=0, max_retries=0),
        guardrails=[l0.json_rule()],
        check_intervals={"guardrails": 1},
    )
    assert await outer.read() == '{"a": 1}'
    assert outer.state.violations == []


async def test_an_inner_give_up_is_the_outer_session_s_failure() -> None:
    script = Script([drop_at(1)] * 2)
    outer = l0.run(
        lambda: l0.run(script.factory, retry=l0.Retry(max_retries=0)),
        retry=l0.Retry(max_retries=2, base_delay=0),
    )
    assert await outer.read() == TEXT
    assert outer.state.attempt == 3
    assert script.calls == 3


async def test_an_error_event_without_recovery_still_fails_the_attempt() -> None:
    async def stream() -> AsyncIterator[str | l0.Event]:
        yield "partial"
        yield l0.Event(l0.EventType.ERROR, error=ValueError("bad chunk"), data={})

    with pytest.raises(ValueError, match="bad chunk"):
        await l0.run(stream, retry=FAST).read()
