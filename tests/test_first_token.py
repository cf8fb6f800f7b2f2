"""The first-token core shared by hedging and ``l0.race_stream`` (in-memory contenders)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import l0
from l0._first_token import Contest, FirstToken, close_quietly
from l0.errors import AbortedError, InterTokenTimeoutError

NO_RETRY = l0.Retry(attempts=0, max_retries=0)


class Stream:
    """An async iterator that records what happened to it."""

    def __init__(
        self,
        items: list[Any],
        *,
        wait: float = 0.0,
        fail: BaseException | None = None,
        then_wait: float = 0.0,
    ) -> None:
        self.items = items
        self.wait = wait
        self.then_wait = then_wait
        self.fail = fail
        self.opened = False
        self.closed = False
        self.read = 0

    async def gen(self) -> AsyncIterator[Any]:
        self.opened = True
        try:
            await asyncio.sleep(self.wait)
            if self.fail is not None:
                raise self.fail
            for item in self.items:
                self.read += 1
                yield item
                await asyncio.sleep(self.then_wait)
        finally:
            self.closed = True


def others() -> set[asyncio.Task[Any]]:
    return asyncio.all_tasks() - {asyncio.current_task()}


async def drain(items: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in items]


async def test_the_first_to_deliver_wins_and_the_loser_is_closed_before_the_decision() -> None:
    slow, fast = Stream(["slow"], wait=3600), Stream(["fast", "er"], wait=0.01)
    contest: Contest[str] = Contest()
    contest.add(slow.gen)
    contest.add(fast.gen)
    winner = await contest.decide()
    assert winner is not None
    assert (winner.index, winner.head) == (1, ["fast"])
    assert slow.closed
    assert not fast.closed
    assert await drain(winner.items()) == ["fast", "er"]
    assert fast.read == 2
    await close_quietly(winner.iterator)
    assert contest.errors == {}
    assert not others()


async def test_a_contender_that_delivered_before_the_decision_was_awaited_wins() -> None:
    early, silent = Stream(["early"]), Stream(["late"], wait=3600)
    contest: Contest[str] = Contest()
    contest.add(early.gen)
    contest.add(silent.gen)
    await asyncio.sleep(0.02)  # the first contender's task reads its first item meanwhile
    winner = await contest.decide()
    assert winner is not None
    assert (winner.index, winner.head) == (0, ["early"])
    assert silent.closed
    await close_quietly(winner.iterator)


async def test_a_delayed_contender_starts_only_when_its_delay_passed() -> None:
    silent, hedge = Stream(["late"], wait=3600), Stream(["hedged"])
    starts: list[str] = []
    contest: Contest[str] = Contest()
    contest.add(silent.gen, on_start=lambda: starts.append("primary"))
    contest.add(hedge.gen, delay=0.1, on_start=lambda: starts.append("hedge"))
    assert contest.started == [0]
    assert starts == ["primary"]
    await asyncio.sleep(0.05)
    assert not hedge.opened  # its delay has not passed and nobody waits for it yet
    winner = await contest.decide()
    assert winner is not None
    assert winner.index == 1
    assert winner.elapsed >= 0.1
    assert starts == ["primary", "hedge"]
    assert contest.started == [0, 1]
    assert silent.closed
    await close_quietly(winner.iterator)


async def test_a_contender_that_delivers_before_the_delay_means_the_next_never_starts() -> None:
    primary, hedge = Stream(["in time"], wait=0.01), Stream(["never"])
    contest: Contest[str] = Contest(idle="stop")
    contest.add(primary.gen)
    contest.add(hedge.gen, delay=3600)
    winner = await contest.decide()
    assert winner is not None
    assert winner.index == 0
    assert contest.started == [0]
    assert not hedge.opened
    await close_quietly(winner.iterator)
    assert not others()


async def test_the_winner_replays_what_was_read_before_its_first_token() -> None:
    stream = Stream(["meta", "more meta", "token", "rest"])
    contest: Contest[str] = Contest()
    contest.add(stream.gen, is_first=lambda item: item in ("token", "rest"))
    winner = await contest.decide()
    assert winner is not None
    assert winner.head == ["meta", "more meta", "token"]
    assert stream.read == 3  # nothing was read past the first token
    assert await drain(winner.items()) == ["meta", "more meta", "token", "rest"]


async def test_contenders_that_deliver_together_keep_the_lowest_index_and_close_the_other() -> None:
    first, second = Stream(["a"]), Stream(["b"])
    contest: Contest[str] = Contest()
    contest.add(first.gen)
    contest.add(second.gen)
    winner = await contest.decide()
    assert winner is not None
    assert winner.index == 0
    assert second.closed
    assert not first.closed
    await close_quietly(winner.iterator)


async def test_a_failure_before_the_first_token_leaves_the_others_running() -> None:
    broken = Stream([], fail=ConnectionResetError("reset"))
    slower = Stream(["ok"], wait=0.05)
    contest: Contest[str] = Contest()
    contest.add(broken.gen)
    contest.add(slower.gen)
    winner = await contest.decide()
    assert winner is not None
    assert winner.index == 1
    assert list(contest.errors) == [0]
    assert isinstance(contest.errors[0], ConnectionResetError)
    assert broken.closed
    await close_quietly(winner.iterator)


async def test_when_every_contender_fails_or_ends_there_is_no_winner() -> None:
    empty = Stream([])
    broken = Stream([], wait=0.01, fail=RuntimeError("boom"))
    contest: Contest[str] = Contest()
    contest.add(empty.gen)
    contest.add(broken.gen)
    assert await contest.decide() is None
    assert contest.ended == [0]
    assert list(contest.errors) == [1]
    assert empty.closed
    assert broken.closed
    assert not others()


async def test_an_opener_that_raises_is_a_failure_of_that_contender() -> None:
    def opener() -> AsyncIterator[str]:
        raise ValueError("no stream")

    good = Stream(["ok"], wait=0.02)
    contest: Contest[str] = Contest()
    contest.add(opener)
    contest.add(good.gen)
    winner = await contest.decide()
    assert winner is not None
    assert winner.index == 1
    assert isinstance(contest.errors[0], ValueError)
    await close_quietly(winner.iterator)


async def test_idle_stop_ends_without_starting_the_next_contender() -> None:
    broken, hedge = Stream([], fail=ConnectionResetError("reset")), Stream(["hedge"])
    contest: Contest[str] = Contest(idle="stop")
    contest.add(broken.gen)
    contest.add(hedge.gen, delay=3600)
    async with asyncio.timeout(10):
        assert await contest.decide() is None
    assert contest.started == [0]
    assert not hedge.opened
    assert isinstance(contest.errors[0], ConnectionResetError)


async def test_idle_start_next_starts_the_next_contender_at_once() -> None:
    broken, next_one = Stream([], fail=ConnectionResetError("reset")), Stream(["next"])
    contest: Contest[str] = Contest()
    contest.add(broken.gen)
    contest.add(next_one.gen, delay=3600)
    async with asyncio.timeout(10):
        winner = await contest.decide()
    assert winner is not None
    assert winner.index == 1
    await close_quietly(winner.iterator)


async def test_cancelling_the_caller_closes_every_contender_and_leaves_no_task() -> None:
    streams = [Stream(["never"], wait=3600) for _ in range(3)]
    opening = asyncio.Event()
    opener_cancelled: list[bool] = []

    async def slow_opener() -> AsyncIterator[str]:
        opening.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            opener_cancelled.append(True)
            raise
        return streams[0].gen()

    contest: Contest[str] = Contest()
    for stream in streams:
        contest.add(stream.gen)
    contest.add(slow_opener)
    caller = asyncio.create_task(contest.decide())
    await opening.wait()
    await asyncio.sleep(0.01)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert all(stream.closed for stream in streams)
    assert opener_cancelled == [True]
    assert not others()
    with pytest.raises(RuntimeError, match="leader already"):
        contest.add(Stream(["late"]).gen)


async def test_close_closes_the_winner_too() -> None:
    stream = Stream(["a", "b"])
    contest: Contest[str] = Contest()
    contest.add(stream.gen)
    winner = await contest.decide()
    assert winner is not None
    await contest.close()
    assert stream.closed
    assert not others()


async def test_a_contender_added_while_the_caller_waits_takes_part() -> None:
    silent = Stream(["late"], wait=3600)
    contest: Contest[str] = Contest()
    contest.add(silent.gen)
    caller = asyncio.create_task(contest.decide())
    await asyncio.sleep(0.02)
    contest.add(Stream(["added"]).gen)
    async with asyncio.timeout(10):
        winner = await caller
    assert winner is not None
    assert (winner.index, winner.head) == (1, ["added"])
    assert silent.closed
    await close_quietly(winner.iterator)


def test_an_unknown_idle_policy_is_named() -> None:
    async def make() -> None:
        Contest(idle="wait")  # type: ignore[arg-type]

    with pytest.raises(ValueError, match="idle='wait': choose one of 'stop', 'start_next'"):
        asyncio.run(make())


async def test_close_quietly_closes_each_object_once_and_ignores_errors() -> None:
    calls: list[str] = []

    class Sync:
        def close(self) -> None:
            calls.append("sync")
            raise OSError("already closed")

    class Async:
        async def aclose(self) -> None:
            calls.append("async")

    one = Async()
    await close_quietly(one, None, Sync(), one, object())
    assert calls == ["async", "sync"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kinds=st.lists(st.sampled_from(["deliver", "fail", "end"]), min_size=1, max_size=5),
    order=st.randoms(use_true_random=False),
)
def test_any_schedule_has_the_first_deliverer_win_and_closes_the_rest(
    kinds: list[str], order: Any
) -> None:
    # Contenders act when the test opens their gate, in a random order: no clock involved.
    async def scenario() -> None:
        gates = [asyncio.Event() for _ in kinds]
        closed = [False] * len(kinds)

        async def contender(i: int) -> AsyncIterator[int]:
            try:
                await gates[i].wait()
                if kinds[i] == "fail":
                    raise ConnectionResetError(i)
                if kinds[i] == "deliver":
                    yield i
            finally:
                closed[i] = True

        contest: Contest[int] = Contest()
        for i in range(len(kinds)):
            contest.add(functools.partial(contender, i))
        decision = asyncio.create_task(contest.decide())
        opened: list[int] = []
        for i in order.sample(range(len(kinds)), len(kinds)):
            opened.append(i)
            gates[i].set()
            task = contest._contenders[i].task
            assert task is not None
            while not task.done():
                await asyncio.sleep(0)
            if kinds[i] == "deliver":
                break
        winner = await decision
        expected = next((i for i in opened if kinds[i] == "deliver"), None)
        assert (winner.index if winner else None) == expected
        assert sorted(contest.errors) == sorted(i for i in opened if kinds[i] == "fail")
        assert contest.ended == sorted(i for i in opened if kinds[i] == "end")
        assert [c for i, c in enumerate(closed) if i != expected] == [True] * (
            len(kinds) - (expected is not None)
        )
        if winner is not None:
            assert winner.head == [expected]
            await contest.close()
        assert all(closed)
        assert not others()

    asyncio.run(scenario())


# --- sessions: the streaming race's use ---------------------------------------------------------


async def test_the_leading_session_is_read_in_the_callers_task_and_its_timeouts_fire_there() -> (
    None
):
    # Read in a contender task until its first token, then in ours: a stall after the first
    # token must still end in the inter-token timeout (its timer cancels the reading task).
    async def stalls() -> AsyncIterator[str]:
        yield "first"
        await asyncio.sleep(3600)
        yield "never"

    first = FirstToken()
    try:
        result = l0.run(
            stalls, retry=NO_RETRY, timeout=l0.Timeout(initial_token=5, inter_token=0.2)
        )
        first.add(result)
        seen: list[str] = []

        async def read() -> None:
            lead = await first.lead()  # in the task that reads the leader
            async for event in lead.events():
                # Appended one by one: the stream raises, and what came before must be kept.
                if event.is_token:
                    seen.append(event.text or "")  # noqa: PERF401

        reader = asyncio.create_task(read())
        # A generous bound, and nothing cancels the reader from outside: only the session's
        # own timer can end the stall.
        done, _ = await asyncio.wait({reader}, timeout=5)
        assert done == {reader}
        with pytest.raises(l0.RetryExhaustedError):
            reader.result()
        assert seen == ["first"]
        assert [type(e.error) for e in result.errors] == [InterTokenTimeoutError]
    finally:
        await first.close()
    assert not others()


async def test_abort_of_the_leading_session_stops_the_callers_wait() -> None:
    async def stalls() -> AsyncIterator[str]:
        yield "first"
        await asyncio.sleep(3600)
        yield "never"

    first = FirstToken()
    try:
        first.add(l0.run(stalls, retry=NO_RETRY))

        async def read() -> None:
            lead = await first.lead()
            iterator = lead.events()
            assert (await anext(iterator)).text == "first"
            asyncio.get_running_loop().call_later(0.05, lead.result.abort)
            await anext(iterator)

        reader = asyncio.create_task(read())
        done, _ = await asyncio.wait({reader}, timeout=5)  # nothing else cancels the reader
        assert done == {reader}
        with pytest.raises(AbortedError):
            reader.result()
    finally:
        await first.close()


async def test_a_result_read_by_another_task_cannot_move() -> None:
    async def silent() -> AsyncIterator[str]:
        await asyncio.sleep(3600)
        yield "never"

    result = l0.run(silent, retry=NO_RETRY)
    reader = asyncio.create_task(result.read())
    await asyncio.sleep(0.02)
    with pytest.raises(RuntimeError, match="another task"):
        result.move_to_current_task()
    result.abort()
    with pytest.raises(AbortedError):
        await reader


# --- hedging: the attempt-level use ------------------------------------------------------------


async def test_a_primary_failing_after_the_hedge_started_leaves_the_hedge_to_answer() -> None:
    primary, hedge = (
        Stream([], wait=0.15, fail=ConnectionResetError("reset")),
        Stream(["hedged"], wait=0.3),
    )
    result = l0.run(primary.gen, fallbacks=[hedge.gen], hedge_after=0.05, retry=NO_RETRY)
    async with asyncio.timeout(10):
        assert await result.read() == "hedged"
    assert result.state.fallback_index == 1
    assert result.state.total_retries == 0
    assert primary.closed
    assert hedge.closed


async def test_cancelling_a_hedged_session_closes_both_provider_streams() -> None:
    primary, hedge = Stream(["late"], wait=3600), Stream(["late too"], wait=3600)
    hedge_started = asyncio.Event()

    def on_event(event: Any) -> None:
        if event.type.value == "HEDGE_START":
            hedge_started.set()

    result = l0.run(primary.gen, fallbacks=[hedge.gen], hedge_after=0.05, on_event=on_event)
    reader = asyncio.create_task(result.read())
    async with asyncio.timeout(10):
        await hedge_started.wait()
        while not hedge.opened:
            await asyncio.sleep(0.005)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    assert primary.closed
    assert hedge.closed
    await result.wait_callbacks()  # on_event's delivery task ends with the session
    assert not others()
