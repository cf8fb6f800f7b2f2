"""``l0.race`` and ``l0.race_stream`` with plain streams and coroutines (no network)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, assert_type

import pydantic
import pytest

import l0
from l0._first_token import FirstToken
from l0.events import EVENT_DOCS, ObservabilityEvent, ObservabilityEventType
from tests.group_helpers import count, eventually

NO_RETRY = l0.Retry(attempts=0, max_retries=0)
END = ObservabilityEventType.GROUP_END


class Person(pydantic.BaseModel):
    name: str
    age: int


async def words(
    tokens: list[str], delay: float = 0.0, fail_at: int | None = None
) -> AsyncIterator[str]:
    for i, token in enumerate(tokens):
        if fail_at == i:
            raise ConnectionResetError("dropped")
        await asyncio.sleep(delay)
        yield token


async def value_after(value: Any, delay: float) -> Any:
    await asyncio.sleep(delay)
    return value


async def fail_after(delay: float) -> Any:
    await asyncio.sleep(delay)
    raise RuntimeError("boom")


async def test_first_valid_coroutine_wins_and_others_are_cancelled() -> None:
    cancelled: list[int] = []

    async def slow(i: int) -> str:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.append(i)
            raise
        return "never"

    result = await l0.race([lambda: slow(0), lambda: value_after("fast", 0.01), lambda: slow(2)])
    assert (result.value, result.winner) == ("fast", 1)
    assert [o.status for o in result.outcomes] == ["cancelled", "won", "cancelled"]
    assert sorted(cancelled) == [0, 2]
    assert result.elapsed < 5


async def test_failures_do_not_win_and_all_failing_raises_with_each_error() -> None:
    result = await l0.race([lambda: fail_after(0.0), lambda: value_after("ok", 0.05)])
    assert result.winner == 1
    assert result.outcomes[0].status == "failed"
    assert isinstance(result.outcomes[0].error, RuntimeError)
    with pytest.raises(l0.AllTasksFailedError) as caught:
        await l0.race([lambda: fail_after(0.0), lambda: fail_after(0.01)])
    assert [type(e) for e in caught.value.errors] == [RuntimeError, RuntimeError]
    assert caught.value.code == "all_tasks_failed"


async def test_stream_factories_run_through_l0_run_with_retries() -> None:
    calls = 0

    def flaky() -> AsyncIterator[str]:
        nonlocal calls
        calls += 1
        return words(["a", "b"], fail_at=1 if calls == 1 else None)

    result = await l0.race([flaky], retry=l0.Retry(base_delay=0.0, max_delay=0.0))
    assert result.value == "ab"
    assert calls == 2


async def test_validate_predicate_and_schema() -> None:
    result = await l0.race(
        [lambda: value_after("no", 0.0), lambda: value_after("yes please", 0.02)],
        validate=lambda v: " " in v,
    )
    assert result.winner == 1
    assert result.outcomes[0].status == "invalid"
    schema_race = await l0.race(
        [lambda: words(["{oops"]), lambda: words(['{"name": "A", "age": 1}'], delay=0.02)],
        validate=Person,
    )
    assert schema_race.winner == 1


async def test_structured_race_returns_the_model_typed() -> None:
    def ask(text: str, delay: float) -> Any:
        return lambda: l0.structured(Person, lambda: words([text], delay=delay))

    result = await l0.race(
        [
            lambda: l0.structured(Person, lambda: words(['{"name": "B", "age": 2}'], 0.05)),
            lambda: l0.structured(Person, lambda: words(['{"name": "A", "age": 1}'])),
        ]
    )
    assert_type(result, l0.RaceResult[Person])
    assert_type(result.value, Person)
    assert result.value == Person(name="A", age=1)
    text = await l0.race([lambda: l0.run(lambda: words(["t"]))])
    assert_type(text, l0.RaceResult[str])
    number = await l0.race([lambda: value_after(3, 0.0)])
    assert_type(number.value, Any)
    assert ask("x", 0.0) is not None


async def test_time_limit_cancels_everything() -> None:
    with pytest.raises(TimeoutError, match="time_limit"):
        await l0.race([lambda: value_after(1, 5.0)], time_limit=0.05)


async def test_events_link_children_to_the_race() -> None:
    seen: list[ObservabilityEvent] = []
    result = await l0.race(
        [lambda: words(["slow"], delay=1.0), lambda: words(["quick"])],
        on_event=seen.append,
        retry=NO_RETRY,
    )
    await eventually(
        lambda: count(seen, END) == 1 and count(seen, ObservabilityEventType.SESSION_END) == 2
    )
    group = [e for e in seen if e.stream_id == result.group_id]
    children = [e for e in seen if e.stream_id != result.group_id]
    kinds = [e.type for e in group]
    assert kinds[0] is ObservabilityEventType.GROUP_START
    assert kinds[-1] is ObservabilityEventType.GROUP_END
    assert ObservabilityEventType.GROUP_WINNER in kinds
    assert ObservabilityEventType.GROUP_TASK_CANCELLED in kinds
    assert children
    assert {e.parent_id for e in children} == {result.group_id}
    assert {e.parent_id for e in group} == {None}
    for event in group:
        assert set(event.data) == set(EVENT_DOCS[event.type][1]), event.type


async def test_nested_group_events_name_the_outer_group() -> None:
    seen: list[ObservabilityEvent] = []

    async def inner() -> str:
        result = await l0.race([lambda: value_after("x", 0.0)], on_event=seen.append)
        return str(result.value)

    outer = await l0.parallel([inner], on_event=seen.append)
    await eventually(lambda: count(seen, END) == 2)
    inner_start = [
        e
        for e in seen
        if e.type is ObservabilityEventType.GROUP_START and e.stream_id != outer.group_id
    ]
    assert [e.parent_id for e in inner_start] == [outer.group_id]


# --- streaming race ----------------------------------------------------------------------------


async def test_streaming_race_streams_the_first_token_and_cancels_the_rest() -> None:
    race = l0.race_stream(
        [lambda: words(["late"], delay=2.0), lambda: words(["on ", "time"], delay=0.01)],
        retry=NO_RETRY,
    )
    text = await race.read()
    assert text == "on time"
    assert race.leader == 1
    assert [o.status for o in race.outcomes] == ["cancelled", "won"]


async def test_streaming_race_leader_failure_resets_and_goes_on() -> None:
    race = l0.race_stream(
        [lambda: words(["a", "b", "c"], fail_at=2), lambda: words(["x", "y"], delay=0.05)],
        retry=NO_RETRY,
    )
    events = [e async for e in race]
    reset = next(e for e in events if e.is_reset)
    assert reset.data["withdrawn"] == "ab"
    assert "".join(e.text or "" for e in events[events.index(reset) :] if e.is_token) == "xy"
    assert [o.status for o in race.outcomes] == ["failed", "won"]


async def test_streaming_race_all_fail() -> None:
    race = l0.race_stream([lambda: words(["a"], fail_at=0)], retry=NO_RETRY)
    with pytest.raises(l0.AllTasksFailedError):
        await race.read()
    with pytest.raises(RuntimeError, match="once"):
        race.__aiter__()


async def test_first_token_core_can_add_a_contender_later() -> None:
    # The hedging use: a second request started while the first is still silent wins.
    first = FirstToken()
    try:
        first.add(l0.run(lambda: words(["slow"], delay=5.0)))
        await asyncio.sleep(0.01)
        first.add(l0.run(lambda: words(["hedge", "d"])))
        lead = await first.lead()
        assert lead.index == 1
        text = "".join([e.text or "" async for e in lead.events() if e.is_token])
        assert text == "hedged"
        assert first.errors() == [None, None]
    finally:
        await first.close()


async def test_consumer_stopping_early_closes_the_leader() -> None:
    closed: list[bool] = []

    async def endless() -> Any:
        try:
            while True:
                await asyncio.sleep(0.001)
                yield "t"
        finally:
            closed.append(True)

    race = l0.race_stream([endless], retry=NO_RETRY)
    iterator = race.__aiter__()
    async for event in iterator:
        if event.is_token:
            break
    await iterator.aclose()  # type: ignore[attr-defined]
    assert closed == [True]


@pytest.mark.parametrize(
    ("tasks", "kwargs", "error", "match"),
    [
        ([], {}, ValueError, r"tasks=\[\]"),
        ("abc", {}, TypeError, "tasks='abc'"),
        ([1], {}, TypeError, r"tasks\[0\]=int"),
        ([lambda: None], {"validate": 3}, TypeError, "validate=3"),
        ([lambda: None], {"time_limit": 0}, ValueError, "time_limit=0"),
        ([lambda: None], {"time_limit": "1"}, TypeError, "time_limit='1'"),
        ([lambda: None], {"plugins": "x"}, TypeError, "plugins='x'"),
        ([lambda: None], {"on_event": 1}, TypeError, "on_event=1"),
    ],
)
async def test_bad_input_is_refused_before_anything_starts(
    tasks: Any, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        await l0.race(tasks, **kwargs)


async def test_a_coroutine_instead_of_a_factory_is_refused() -> None:
    coroutine = value_after(1, 0)
    tasks: Any = [coroutine]
    with pytest.raises(TypeError, match="not the awaitable"):
        await l0.race(tasks)
    with pytest.raises(ValueError, match=r"tasks=\[\]"):
        l0.race_stream([])


async def test_group_session_id_reaches_child_sessions() -> None:
    seen: list[ObservabilityEvent] = []
    await l0.race([lambda: words(["a"])], session_id="conversation-7", on_event=seen.append)
    await eventually(
        lambda: count(seen, END) == 1 and count(seen, ObservabilityEventType.SESSION_END) == 1
    )
    assert seen
    assert {e.session_id for e in seen} == {"conversation-7"}
    with pytest.raises(TypeError, match="session_id=3"):
        await l0.race([lambda: words(["a"])], session_id=3)  # type: ignore[call-overload]
