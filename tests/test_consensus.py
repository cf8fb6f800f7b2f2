"""``l0.consensus``: strategies, similarity, field voting, failures (no network)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, assert_type

import pydantic
import pytest

import l0
from l0.consensus import normalize_text, similarity
from l0.events import ObservabilityEvent, ObservabilityEventType
from tests.group_helpers import count, eventually


def const(value: Any, delay: float = 0.0) -> Any:
    async def task() -> Any:
        await asyncio.sleep(delay)
        return value

    return task


def failing(delay: float = 0.0) -> Any:
    async def task() -> Any:
        await asyncio.sleep(delay)
        raise RuntimeError("down")

    return task


class Answer(pydantic.BaseModel):
    city: str
    year: int
    sure: bool


def test_normalisation_and_similarity() -> None:
    assert normalize_text("  Hello,   WORLD!! ") == "hello world"
    assert similarity("Hello, world.", "hello world") == 1.0
    assert similarity("a b c d", "a b c e") == pytest.approx(0.75)
    assert similarity("yes", "no") == 0.0
    assert similarity("", "") == 1.0


async def test_majority_picks_the_agreed_text_and_reports_dissent() -> None:
    result = await l0.consensus(
        [
            l0_text("The answer is 42."),
            l0_text("the answer is 42"),
            l0_text("It is 41."),
        ]
    )
    assert_type(result, l0.ConsensusResult[str])
    assert result.value == "The answer is 42."
    assert result.agreement == pytest.approx(2 / 3)
    assert result.dissent == {2: "It is 41."}
    assert result.strategy == "majority"


def l0_text(text: str) -> Callable[[], l0.Result]:
    async def words() -> AsyncIterator[str]:
        first, *rest = text.split(" ")
        yield first
        for word in rest:
            yield " " + word

    return lambda: l0.run(words)


async def test_threshold_lets_near_answers_agree() -> None:
    tasks = [const("the cat sat on the mat"), const("the cat sat on a mat"), const("dogs")]
    with pytest.raises(l0.ConsensusError) as caught:
        await l0.consensus(tasks, strategy="majority", threshold=1.0)
    assert caught.value.agreement == pytest.approx(1 / 3)
    loose = await l0.consensus(tasks, strategy="majority", threshold=0.8)
    assert loose.value == "the cat sat on the mat"
    assert loose.dissent == {2: "dogs"}


async def test_majority_means_strictly_more_than_half() -> None:
    with pytest.raises(l0.ConsensusError, match="no majority agreement"):
        await l0.consensus([const("a"), const("a"), const("b"), const("b")])


async def test_unanimous() -> None:
    ok = await l0.consensus([const("Yes."), const("yes")], strategy="unanimous")
    assert ok.agreement == 1.0
    with pytest.raises(l0.ConsensusError) as caught:
        await l0.consensus([const("yes"), const("no"), const("yes")], strategy="unanimous")
    assert caught.value.outputs == {0: "yes", 1: "no", 2: "yes"}
    assert caught.value.code == "consensus_failed"


async def test_failed_tasks_and_min_outputs() -> None:
    # Default for majority: more than half of the tasks must succeed (2 of 3).
    result = await l0.consensus([const("x"), failing(), const("x")])
    assert result.value == "x"
    assert result.outcomes[1].status == "failed"
    with pytest.raises(l0.ConsensusError, match="1 of 3 tasks succeeded") as caught:
        await l0.consensus([const("x"), failing(), failing()])
    assert set(caught.value.errors) == {1, 2}
    # Unanimous needs every task by default, unless min_outputs says otherwise.
    with pytest.raises(l0.ConsensusError):
        await l0.consensus([const("x"), failing()], strategy="unanimous")
    relaxed = await l0.consensus([const("x"), failing()], strategy="unanimous", min_outputs=1)
    assert relaxed.value == "x"


async def test_on_failure_raise_stops_at_the_first_failure() -> None:
    with pytest.raises(l0.ConsensusError, match="task 1 failed") as caught:
        await l0.consensus([const("x", 5.0), failing(), const("x", 5.0)], on_failure="raise")
    assert list(caught.value.errors) == [1]
    assert caught.value.outputs == {}


async def test_best_with_score_and_without() -> None:
    scored = await l0.consensus(
        [const("short"), const("the longest one"), const("medium one")],
        strategy="best",
        score=len,
    )
    assert scored.value == "the longest one"
    first = await l0.consensus(
        [const("slow", 1.0), const("fast", 0.01)],
        strategy="best",
    )
    assert first.value == "fast"
    assert [o.status for o in first.outcomes] == ["cancelled", "completed"]


async def test_structured_field_voting_with_ties_reported() -> None:
    outputs = [
        Answer(city="Paris", year=1889, sure=True),
        Answer(city="paris", year=1889, sure=False),
        Answer(city="Paris", year=1887, sure=True),
        {"city": "Lyon", "year": 1887, "sure": False},
    ]
    result = await l0.consensus([const(o) for o in outputs], schema=Answer)
    assert isinstance(result.value, Answer)
    assert result.value == Answer(city="Paris", year=1889, sure=True)
    assert result.field_agreement == {"city": 0.75, "year": 0.5, "sure": 0.5}
    assert result.ties == ["year", "sure"]
    assert result.agreement == 0.5
    assert sorted(result.dissent) == [1, 2, 3]
    with pytest.raises(l0.ConsensusError) as caught:
        await l0.consensus([const(o) for o in outputs], schema=Answer, strategy="unanimous")
    assert caught.value.field_agreement["city"] == 0.75


async def test_structured_tasks_are_typed() -> None:
    async def stream(text: str) -> Any:
        yield text

    good = '{"city": "Paris", "year": 1889, "sure": true}'
    result = await l0.consensus(
        [lambda: l0.structured(Answer, lambda: stream(good)) for _ in range(3)],
        schema=Answer,
    )
    assert_type(result, l0.ConsensusResult[Answer])
    assert result.value.city == "Paris"


async def test_consensus_events() -> None:
    seen: list[ObservabilityEvent] = []
    await l0.consensus([const("a"), const("a")], on_event=seen.append)
    with pytest.raises(l0.ConsensusError):
        await l0.consensus([const("a"), const("b")], strategy="unanimous", on_event=seen.append)
    await eventually(lambda: count(seen, ObservabilityEventType.GROUP_END) == 2)
    kinds = [e.type for e in seen]
    assert ObservabilityEventType.CONSENSUS_REACHED in kinds
    failed = [e for e in seen if e.type is ObservabilityEventType.CONSENSUS_FAILED]
    assert len(failed) == 1
    assert failed[0]["strategy"] == "unanimous"
    assert failed[0]["agreement"] == 0.5


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"strategy": "vote"}, ValueError, "strategy='vote'.*unanimous, majority, best"),
        ({"threshold": 1.5}, ValueError, r"threshold=1.5.*\[0, 1\]"),
        ({"threshold": -0.1}, ValueError, "threshold=-0.1"),
        ({"threshold": "high"}, TypeError, "threshold='high'"),
        ({"schema": dict}, TypeError, "schema="),
        ({"score": 3, "strategy": "best"}, TypeError, "score=3"),
        ({"score": len}, ValueError, "score= is used by strategy='best'"),
        ({"min_outputs": 0}, ValueError, "min_outputs=0"),
        ({"min_outputs": 5}, ValueError, "min_outputs=5"),
        ({"on_failure": "skip"}, ValueError, "on_failure='skip'.*ignore, raise"),
    ],
)
async def test_bad_input(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        await l0.consensus([const("a"), const("a")], **kwargs)
    with pytest.raises(ValueError, match=r"tasks=\[\]"):
        await l0.consensus([])


async def test_schema_parses_json_text_and_leaves_invalid_outputs_out() -> None:
    good = '{"city": "Paris", "year": 1889, "sure": true}'
    result = await l0.consensus(
        [const(good), const(f"Here you go:\n```json\n{good}\n```"), const('{"city": 3}')],
        schema=Answer,
    )
    assert result.value == Answer(city="Paris", year=1889, sure=True)
    assert [o.status for o in result.outcomes] == ["completed", "completed", "invalid"]
    assert isinstance(result.outcomes[2].error, pydantic.ValidationError)
    assert result.agreement == 1.0
