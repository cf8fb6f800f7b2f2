"""An attempt that starts the answer over instead of continuing it (no doubled text)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

import l0
from l0.testing import split_words
from tests.runtime_helpers import consume

FAST = l0.Retry(base_delay=0.0, max_delay=0.0)
LONG = " ".join(f"word{i}" for i in range(400)) + "."


def drops_then(kept_tokens: int, answers: list[list[str]]) -> Any:
    """First attempt: the first ``kept_tokens`` of LONG then a drop; then ``answers``."""
    attempts = 0

    async def stream() -> AsyncIterator[str]:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            for token in split_words(LONG)[:kept_tokens]:
                yield token
            raise ConnectionResetError("connection reset by peer")
        for token in answers[attempts - 2]:
            yield token

    return stream


async def test_a_start_over_of_a_long_kept_text_is_dropped_while_it_streams() -> None:
    result = l0.run(
        drops_then(300, [split_words(LONG)]), retry=FAST, continue_from_last_good_token=True
    )
    shown, events = await consume(result)
    assert shown == LONG
    assert result.state.content == LONG
    assert not any(event.is_reset for event in events)
    assert result.state.token_count == len(split_words(LONG))


async def test_a_repeat_that_ends_inside_a_token_keeps_the_rest_of_that_token() -> None:
    kept = "".join(split_words(LONG)[:300])
    tokens = [kept[:500], kept[500:] + LONG[len(kept) : len(kept) + 9], LONG[len(kept) + 9 :]]
    result = l0.run(drops_then(300, [tokens]), retry=FAST, continue_from_last_good_token=True)
    shown, _ = await consume(result)
    assert shown == LONG


async def test_a_start_over_that_then_says_something_else_withdraws_the_kept_text() -> None:
    other = " ".join(f"word{i}" for i in range(20)) + " and then a different ending."
    result = l0.run(
        drops_then(300, [split_words(other)]), retry=FAST, continue_from_last_good_token=True
    )
    shown, events = await consume(result)
    resets = [event for event in events if event.is_reset]
    assert [event.data["reason"] for event in resets] == ["restart"]
    assert shown == other
    assert result.state.content == other
    assert result.state.resumed is False


async def test_a_continuation_that_begins_like_the_answer_is_not_taken_for_a_start_over() -> None:
    # "word0" also begins the kept text, but the repeat is far shorter than a start over.
    tail = "word0 word1 close it."
    result = l0.run(
        drops_then(300, [split_words(tail)]), retry=FAST, continue_from_last_good_token=True
    )
    shown, events = await consume(result)
    kept = "".join(split_words(LONG)[:300])
    assert shown == kept + tail
    assert not any(event.is_reset for event in events)


async def test_a_start_over_that_ends_before_the_kept_text_ends_adds_nothing() -> None:
    kept = "".join(split_words(LONG)[:300])
    result = l0.run(
        drops_then(300, [split_words(kept[:100])]), retry=FAST, continue_from_last_good_token=True
    )
    assert await result.read() == kept


WORDS = [f" w{i}" for i in range(120)]
FULL_TEXT = "".join(WORDS)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    drops=st.lists(st.integers(1, len(WORDS) - 1), min_size=1, max_size=4),
    behaviours=st.lists(st.sampled_from(["restart", "continue", "repeat_tail"]), min_size=4),
)
def test_no_text_is_doubled_or_lost_whatever_the_next_attempt_does(
    drops: list[int], behaviours: list[str]
) -> None:
    """Attempts drop after a random number of words; the next one restarts, continues exactly,
    or continues repeating the last words; the answer is always the full text, once."""

    async def main() -> tuple[str, str]:
        calls = 0

        async def stream(ctx: l0.AttemptContext) -> AsyncIterator[str]:
            nonlocal calls
            calls += 1
            kept = ctx.checkpoint
            behaviour = behaviours[(calls - 1) % len(behaviours)] if kept else "restart"
            if behaviour == "restart":
                start = 0
            else:
                start = len(split_words(kept))
                if behaviour == "repeat_tail":
                    start = max(0, start - 3)
            drop = drops[calls - 1] if calls <= len(drops) else None
            for position, word in enumerate(WORDS[start:], start):
                if drop is not None and position >= drop and position >= start + 1:
                    raise ConnectionResetError("connection reset by peer")
                yield word

        result = l0.run(
            stream,
            retry=l0.Retry(max_retries=10, base_delay=0.0, max_delay=0.0),
            continue_from_last_good_token=True,
        )
        shown, _ = await consume(result)
        return shown, result.state.content

    shown, content = asyncio.run(main())
    assert content == FULL_TEXT
    assert shown == FULL_TEXT
