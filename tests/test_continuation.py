"""Continuation from the last good token: checkpoints, prompts, the overlap at the seam."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

import l0
from l0._runtime import _overlap
from l0.plugins import L0PluginManager
from tests.runtime_helpers import collect

FAST = l0.Retry(base_delay=0.0, max_delay=0.0)
FIRST = ["The", " quick", " brown", " fox", " jumps"]
FULL = "The quick brown fox jumps over the lazy dog."


@pytest.fixture
def pm() -> L0PluginManager:
    return l0.build_plugin_manager(entry_points=False)


def dropping_then(continuation: list[str]) -> tuple[Any, list[l0.AttemptContext]]:
    """A factory whose first attempt drops after FIRST, the second yields ``continuation``."""
    seen: list[l0.AttemptContext] = []

    async def stream(ctx: l0.AttemptContext) -> AsyncIterator[str]:
        seen.append(ctx)
        if ctx.attempt == 1:
            for token in FIRST:
                yield token
            raise ConnectionResetError("connection reset by peer")
        for token in continuation:
            yield token

    return stream, seen


@pytest.mark.parametrize(
    ("continuation", "removed"),
    [
        ([" over", " the", " lazy", " dog."], 0),
        ([" fox", " jumps", " over", " the", " lazy", " dog."], len(" fox jumps")),
        (["fox jumps", " over the lazy dog."], len("fox jumps")),
        ([" brown", " fox", " jumps over", " the lazy", " dog."], len(" brown fox jumps")),
        ([" jum", "ps", " over the lazy dog."], len(" jumps")),
    ],
)
async def test_drop_then_continue_has_no_gap_and_no_doubled_words(
    pm: L0PluginManager, continuation: list[str], removed: int
) -> None:
    factory, seen = dropping_then(continuation)
    prompts: list[str] = []
    resumes: list[tuple[str, int]] = []
    observed: list[l0.ObservabilityEvent] = []

    def build(checkpoint: str) -> str:
        prompts.append(checkpoint)
        return f"Continue exactly from: {checkpoint}"

    result = l0.run(
        factory,
        plugins=pm,
        retry=FAST,
        continue_from_last_good_token=True,
        build_continuation_prompt=build,
        on_resume=lambda text, count: resumes.append((text, count)),
        on_event=observed.append,
    )
    events = await collect(result)
    await result.wait_callbacks()
    shown = "".join(e.text for e in events if e.is_token)
    assert shown == FULL
    assert result.state.content == FULL
    assert not [e for e in events if e.is_reset]  # nothing delivered was withdrawn
    assert result.state.resumed
    assert result.state.resume_point == "The quick brown fox jumps"
    assert result.state.resume_from == len("The quick brown fox jumps")
    assert prompts == ["The quick brown fox jumps"]
    assert seen[1].checkpoint == "The quick brown fox jumps"
    assert seen[1].continuation_prompt == "Continue exactly from: The quick brown fox jumps"
    assert resumes == [("The quick brown fox jumps", 5)]
    ends = [e for e in observed if e.type is l0.ObservabilityEventType.RESUME_END]
    assert [(e["success"], e["overlap_chars"]) for e in ends] == [(True, removed)]


async def test_overlap_removal_can_be_turned_off(pm: L0PluginManager) -> None:
    factory, _ = dropping_then([" jumps", " over", " the", " lazy", " dog."])
    result = l0.run(
        factory, plugins=pm, retry=FAST, continue_from_last_good_token=True, remove_overlap=False
    )
    assert await result.read() == "The quick brown fox jumps jumps over the lazy dog."


async def test_zero_argument_factories_still_work_with_continuation(
    pm: L0PluginManager,
) -> None:
    calls = 0

    async def stream() -> AsyncIterator[str]:
        nonlocal calls
        calls += 1
        yield "Hello"
        if calls == 1:
            raise ConnectionResetError("reset")
        yield " world"

    result = l0.run(stream, plugins=pm, retry=FAST, continue_from_last_good_token=True)
    # The factory cannot continue, so it starts over; the repeated "Hello" is the seam overlap.
    assert await result.read() == "Hello world"


async def test_checkpoints_every_n_tokens(pm: L0PluginManager) -> None:
    saved: list[tuple[str, int]] = []

    async def stream() -> AsyncIterator[str]:
        for i in range(25):
            yield f"t{i} "

    result = l0.run(
        stream,
        plugins=pm,
        continue_from_last_good_token=True,
        check_intervals={"checkpoint": 10},
        on_checkpoint=lambda text, count: saved.append((text, count)),
    )
    await result.read()
    await result.wait_callbacks()
    assert [count for _, count in saved] == [10, 20]
    assert saved[0][0] == "".join(f"t{i} " for i in range(10))
    assert result.state.checkpoint == "".join(f"t{i} " for i in range(25))[: len(saved[1][0])]


async def test_without_continuation_retries_start_over(pm: L0PluginManager) -> None:
    factory, seen = dropping_then(list(FULL.split(" ")))
    result = l0.run(factory, plugins=pm, retry=FAST)
    events = await collect(result)
    assert next(e for e in events if e.is_reset).data["withdrawn"] == "The quick brown fox jumps"
    assert seen[1].checkpoint == ""
    assert not result.state.resumed


@pytest.mark.parametrize(
    ("checkpoint", "text", "expected"),
    [
        ("The quick brown fox", " brown fox jumps", len(" brown fox")),
        ("The quick brown fox", "brown fox jumps", len("brown fox")),
        ("The quick brown fox", " jumps", 0),
        ("I saw the", "he said", 0),  # would split "the"
        ("It is red", "redder", 0),  # would split "redder"
        ("Go.", ". Then", 0),  # a single character is never an overlap
        ("a b c", "  ", 0),  # whitespace only
        ("one two", "one two three", len("one two")),
    ],
)
def test_overlap_rules(checkpoint: str, text: str, expected: int) -> None:
    assert _overlap(checkpoint, text, 200) == expected


def test_bad_continuation_arguments() -> None:
    async def stream() -> AsyncIterator[str]:
        yield "x"

    with pytest.raises(TypeError, match="continue_from_last_good_token="):
        l0.run(stream, continue_from_last_good_token="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"check_intervals\['checkpoints'\]"):
        l0.run(stream, check_intervals={"checkpoints": 3})
    with pytest.raises(ValueError, match=r"check_intervals\['checkpoint'\]=0"):
        l0.run(stream, check_intervals={"checkpoint": 0})
    with pytest.raises(TypeError, match="build_continuation_prompt="):
        l0.run(stream, build_continuation_prompt="x")  # type: ignore[arg-type]


async def test_a_continuation_that_adds_nothing_is_still_checked_whole() -> None:
    # The kept text alone is the answer when the next attempt ends without a token: the
    # guardrails' final checks must see it (an unclosed JSON document was accepted).
    calls = 0

    async def stream() -> AsyncIterator[str]:
        nonlocal calls
        calls += 1
        if calls == 1:
            for token in ['{"a": ', "[1, ", "2, ", "3, ", "4, ", "5, ", "6, ", "7, ", "8, ", "9"]:
                yield token
            raise ConnectionResetError("dropped")

    result = l0.run(
        stream,
        guardrails=[l0.json_rule()],
        continue_from_last_good_token=True,
        retry=l0.Retry(max_retries=1, base_delay=0, max_delay=0),
    )
    with pytest.raises(l0.errors.RetryExhaustedError):
        await result.read()
    assert calls == 2
    assert [v.rule for v in result.state.violations] == ["json"]
    assert "never closed" in result.state.violations[0].message


async def test_a_batching_rule_counts_the_kept_text_once_after_a_resume() -> None:
    # A rule session that wants 100 new characters is first fed once 100 have come, the kept
    # text of a continuation included once (it was counted twice: fed at 20 new characters).
    fed: list[int] = []

    class Batches:
        def __init__(self, rule: l0.GuardrailRule) -> None:
            self.wants = 100

        def feed(self, delta: str, state: Any) -> None:
            fed.append(len(delta))

        def finish(self, context: Any) -> None:
            return None

    rule = l0.GuardrailRule("batches", streaming=True, session=Batches)
    calls = 0

    async def stream() -> AsyncIterator[str]:
        nonlocal calls
        calls += 1
        if calls == 1:
            for _ in range(6):
                yield "0123456789"  # 60 characters kept
            raise ConnectionResetError("dropped")
        for _ in range(8):
            yield "abcde"  # 40 more: 100 in all

    result = l0.run(
        stream,
        guardrails=[rule],
        continue_from_last_good_token=True,
        check_intervals={"guardrails": 1, "checkpoint": 1},
        remove_overlap=False,
        retry=l0.Retry(max_retries=1, base_delay=0, max_delay=0),
    )
    assert await result.read() == "0123456789" * 6 + "abcde" * 8
    # The kept 60 are checked when the first attempt fails (before they are kept); the second
    # attempt's run reaches 100 at its last token: the kept 60 plus 40 new, in one feed.
    assert fed == [60, 100]
