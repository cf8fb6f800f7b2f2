"""Race, parallel, pool and consensus through the real ``openai`` SDK against the chaos server.

Timing claims are checked on the server's own request log: when each request arrived
(``time``) and when its response ended (``ended``, with ``disconnected`` when the client
closed it). Both use ``time.monotonic()``, the clock of this process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import openai
import pydantic
import pytest

import l0
from l0.testing import ChaosServer, Fault, RecordedRequest, split_words

MESSAGES: Any = [{"role": "user", "content": "Answer."}]
NO_RETRY = l0.Retry(attempts=0, max_retries=0, base_delay=0.0, max_delay=0.0)
FAST = l0.Retry(base_delay=0.0, max_delay=0.0)
CLOSE_WITHIN = 0.5


def _client(server: ChaosServer, **options: Any) -> Any:
    raw = openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)
    return l0.wrap(raw, **options)


def _call(client: Any, model: str) -> Callable[[], Any]:
    return lambda: client.chat.completions.create(model=model, messages=MESSAGES, stream=True)


def _by_model(server: ChaosServer, model: str) -> list[RecordedRequest]:
    return [r for r in server.requests if r.model == model]


async def _ended(server: ChaosServer, model: str) -> RecordedRequest:
    """The model's (single) request once the server has finished with it."""
    for _ in range(200):
        (record,) = _by_model(server, model)
        if record.ended is not None:
            return record
        await asyncio.sleep(0.02)
    raise AssertionError(f"the {model} request never ended")


# --- race ------------------------------------------------------------------------------------


async def test_race_fastest_model_stalls_second_wins_and_loser_is_closed() -> None:
    scripts = {
        # First token at once, then 30 s of silence: the fastest starter never finishes.
        "fast": [Fault.stall_after(1, 30.0, text="Quick start then nothing more")],
        "steady": [Fault.ok(text="A steady complete answer", delay=0.02)],
    }
    async with ChaosServer(model_scripts=scripts) as server:
        client = _client(server, retry=NO_RETRY)
        started = time.monotonic()
        result = await l0.race([_call(client, "fast"), _call(client, "steady")])
        won_at = started + result.elapsed
        assert result.value == "A steady complete answer"
        assert result.winner == 1
        assert [o.status for o in result.outcomes] == ["cancelled", "won"]
        loser = await _ended(server, "fast")
        assert loser.disconnected
        assert loser.ended is not None
        assert loser.ended - won_at < CLOSE_WITHIN
        assert server.in_flight == 0
        await client.l0_client.close()


async def test_race_first_to_finish_fails_its_guardrail_slower_valid_one_wins() -> None:
    bad = "As an AI language model, I cannot answer that."
    scripts = {
        "quick": [Fault.ok(text=bad)] * 3,
        "careful": [Fault.ok(text="The bridge opens at nine.", delay=0.1)],
    }
    async with ChaosServer(model_scripts=scripts) as server:
        client = _client(
            server,
            retry=l0.Retry(attempts=1, max_retries=1, base_delay=0.0, max_delay=0.0),
            guardrails=[l0.custom_pattern_rule([r"As an AI language model"])],
        )
        result = await l0.race([_call(client, "quick"), _call(client, "careful")])
        assert result.winner == 1
        assert result.value == "The bridge opens at nine."
        quick = result.outcomes[0]
        assert quick.status == "failed"
        assert isinstance(quick.error, l0.RetryExhaustedError)
        assert isinstance(quick.error.last_error, l0.errors.GuardrailError)
        assert len(_by_model(server, "quick")) == 2
        await client.l0_client.close()


async def test_race_validate_rejects_the_fast_answer() -> None:
    scripts = {
        "short": [Fault.ok(text="No.")],
        "long": [Fault.ok(text="Yes, with three good reasons.", delay=0.05)],
    }
    async with ChaosServer(model_scripts=scripts) as server:
        client = _client(server, retry=NO_RETRY)
        result = await l0.race(
            [_call(client, "short"), _call(client, "long")],
            validate=lambda text: len(text.split()) > 2,
        )
        assert result.winner == 1
        assert result.outcomes[0].status == "invalid"
        assert result.outcomes[0].value == "No."
        await client.l0_client.close()


async def test_streaming_race_leader_drops_mid_stream_the_race_goes_on() -> None:
    scripts = {
        # The leader sends three tokens at once, then the connection drops (no retry left).
        "leader": [Fault.drop_after(3, text="Leader says one two three four five")],
    }
    # Slower to start (0.3 s before each token), so it loses the first round and is closed;
    # the race then starts it again and it streams the answer.
    backup = Fault.ok(text="Backup answers in full", delay=0.3)
    async with ChaosServer(model_scripts=scripts, default=backup) as server:
        client = _client(server, retry=NO_RETRY)
        race = l0.race_stream([_call(client, "leader"), _call(client, "backup")])
        events = [event async for event in race]
        tokens = [e.text for e in events if e.is_token]
        resets = [e for e in events if e.is_reset]
        assert len(resets) == 1
        before = events.index(resets[0])
        shown_first = "".join(e.text or "" for e in events[:before] if e.is_token)
        assert shown_first == "Leader says one"
        assert resets[0].data["withdrawn"] == shown_first
        assert resets[0].data["kept"] == 0
        after = "".join(e.text or "" for e in events[before:] if e.is_token)
        assert after == "Backup answers in full"
        assert "".join(t or "" for t in tokens) == shown_first + after
        assert race.leader == 1
        assert [o.status for o in race.outcomes] == ["failed", "won"]
        *losers, last = _by_model(server, "backup")
        assert not last.disconnected
        # A first-round backup request that reached the server was closed when it lost.
        for loser in losers:
            assert loser.disconnected
        await client.l0_client.close()


async def test_streaming_race_closes_the_slow_starter_at_the_first_token() -> None:
    scripts = {
        "slow": [Fault.slow_first_token(5.0)],
        # 0.2 s before each token: time for the slow request to reach the server first.
        "quick": [Fault.ok(text="Quick and whole", delay=0.2)],
    }
    async with ChaosServer(model_scripts=scripts) as server:
        client = _client(server, retry=NO_RETRY)
        race = l0.race_stream([_call(client, "slow"), _call(client, "quick")])
        first_token_at = None
        async for event in race:
            if event.is_token and first_token_at is None:
                first_token_at = time.monotonic()
        assert first_token_at is not None
        assert race.leader == 1
        slow = await _ended(server, "slow")
        assert slow.disconnected
        assert slow.ended is not None
        assert slow.ended - first_token_at < CLOSE_WITHIN
        await client.l0_client.close()


async def test_raw_sdk_calls_get_retries_for_their_request_errors() -> None:
    # An unwrapped client: the 429 happens while awaiting create(), before any stream.
    scripts = {"busy": [Fault.status(429, headers={"Retry-After": "0"}), Fault.ok(text="Done.")]}
    async with ChaosServer(model_scripts=scripts) as server:
        raw = openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)

        def call() -> Any:
            return raw.chat.completions.create(model="busy", messages=MESSAGES, stream=True)

        result = await l0.parallel([call], retry=FAST)
        assert result.values == ["Done."]
        assert len(_by_model(server, "busy")) == 2
        await raw.close()


# --- parallel --------------------------------------------------------------------------------


async def test_parallel_concurrency_two_over_ten_tasks_two_fail() -> None:
    scripts = {f"m{i}": [Fault.ok(text=f"answer {i}", delay=0.02)] for i in range(10)}
    scripts["m3"] = [Fault.status(400)]
    scripts["m7"] = [Fault.status(400)]
    async with ChaosServer(model_scripts=scripts) as server:
        client = _client(server, retry=FAST)
        progress: list[tuple[int, int, int]] = []
        result = await l0.parallel(
            [_call(client, f"m{i}") for i in range(10)],
            concurrency=2,
            on_progress=lambda done, failed, total: progress.append((done, failed, total)),
        )
        assert result.values == [None if i in (3, 7) else f"answer {i}" for i in range(10)]
        assert [i for i, e in enumerate(result.errors) if e is not None] == [3, 7]
        assert all(isinstance(result.errors[i], openai.BadRequestError) for i in (3, 7))
        assert (result.succeeded, result.failed) == (8, 2)
        assert server.peak_in_flight == 2
        assert len(server.requests) == 10
        assert progress[-1] == (8, 2, 10)
        assert len(progress) == 10
        await client.l0_client.close()


async def test_cancelling_parallel_leaves_no_task_and_no_connection() -> None:
    async with ChaosServer(default=Fault.stall_after(1, 30.0)) as server:
        client = _client(server, retry=NO_RETRY)
        run = asyncio.ensure_future(
            l0.parallel([_call(client, f"s{i}") for i in range(4)], concurrency=3)
        )
        for _ in range(200):
            if server.in_flight == 3:
                break
            await asyncio.sleep(0.02)
        assert server.in_flight == 3
        cancelled_at = time.monotonic()
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        for _ in range(50):
            if server.in_flight == 0:
                break
            await asyncio.sleep(0.02)
        assert server.in_flight == 0
        assert len(server.requests) == 3
        for record in server.requests:
            assert record.disconnected
            assert record.ended is not None
            assert record.ended - cancelled_at < CLOSE_WITHIN
        leftover = [t for t in asyncio.all_tasks() if t.get_name().startswith("l0-parallel")]
        assert leftover == []
        await client.l0_client.close()


# --- pool ------------------------------------------------------------------------------------


async def test_pool_holds_600_rpm_over_a_burst_of_40() -> None:
    async with ChaosServer(text="ok") as server:
        client = _client(server, retry=NO_RETRY)
        async with l0.Pool(concurrency=40, rpm=600) as pool:
            futures = [pool.submit(_call(client, "rated")) for _ in range(40)]
        assert [f.result() for f in futures] == ["ok"] * 40
        times = sorted(r.time for r in server.requests)
        assert len(times) == 40
        first = times[0]
        # The documented burst allowance: one second's worth (rpm / 60 = 10) at once ...
        assert times[9] - first < 0.5
        # ... then one every 0.1 s: any 21 requests span at least 1 s. Arrival times at the
        # server carry the client's scheduling jitter (up to a few hundred ms on a loaded
        # 2-core CI machine), so the bounds allow for it; without the limiter all 40 arrive
        # within a fraction of a second and every bound fails.
        for k in range(20):
            assert times[k + 20] - times[k] >= 1.0 - 0.35, k
        assert times[39] - first >= 3.0 - 0.4
        # About 10 per second after the burst (generous upper bound for a busy machine).
        rate = 29 / (times[39] - times[10])
        assert 5.0 < rate < 11.0
        await client.l0_client.close()


async def test_pool_tpm_charges_reported_usage_and_waits_out_the_debt() -> None:
    text = " ".join(["word"] * 1210)
    async with ChaosServer(text=text) as server:
        raw = openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        client = l0.wrap(raw, retry=NO_RETRY)

        def call() -> Any:
            return client.chat.completions.create(
                model="tok",
                messages=MESSAGES,
                stream=True,
                stream_options={"include_usage": True},
            )

        class Spy:
            """Delegates to a real limiter and remembers what it was charged."""

            def __init__(self) -> None:
                self.inner = l0.LocalRateLimiter(tpm=1200)  # 20 tokens per second
                self.charged: list[int] = []

            async def acquire(self) -> None:
                await self.inner.acquire()

            def record(self, tokens: int) -> None:
                self.charged.append(tokens)
                self.inner.record(tokens)

        spy = Spy()
        async with l0.Pool(concurrency=1, limiter=spy) as pool:
            first = pool.submit(call)
            second = pool.submit(call)
            assert await first == text
            assert await second == text
        used = 1 + len(split_words(text))  # the prompt's one word and every streamed token
        assert spy.charged == [used, used]
        # The first answer overdrew the 1200-token minute: the second waits the debt out.
        one, two = server.requests
        assert one.ended is not None
        assert two.time - one.ended >= (used - 1200) / 20 - 0.05
        await raw.close()


# --- consensus -------------------------------------------------------------------------------


async def test_consensus_majority_over_three_models_one_disagrees() -> None:
    scripts = {
        "a": [Fault.ok(text="Paris is the capital of France.")],
        "b": [Fault.ok(text="paris is the capital of france")],
        "c": [Fault.ok(text="Lyon is the capital of France.")],
    }
    async with ChaosServer(model_scripts=scripts) as server:
        client = _client(server, retry=NO_RETRY)
        result = await l0.consensus([_call(client, m) for m in "abc"], strategy="majority")
        assert result.value == "Paris is the capital of France."
        assert result.agreement == pytest.approx(2 / 3)
        assert result.dissent == {2: "Lyon is the capital of France."}
        await client.l0_client.close()


async def test_consensus_unanimous_failure_carries_every_output() -> None:
    scripts = {
        "a": [Fault.ok(text="yes")],
        "b": [Fault.ok(text="yes")],
        "c": [Fault.ok(text="no")],
    }
    async with ChaosServer(model_scripts=scripts) as server:
        client = _client(server, retry=NO_RETRY)
        with pytest.raises(l0.ConsensusError) as caught:
            await l0.consensus([_call(client, m) for m in "abc"], strategy="unanimous")
        assert caught.value.outputs == {0: "yes", 1: "yes", 2: "no"}
        assert caught.value.agreement == pytest.approx(2 / 3)
        await client.l0_client.close()


class City(pydantic.BaseModel):
    name: str
    country: str
    population_millions: int


async def test_consensus_structured_field_voting_with_one_field_split() -> None:
    answers = [
        '{"name": "Paris", "country": "France", "population_millions": 2}',
        '{"name": "Paris", "country": "France", "population_millions": 11}',
        '{"name": "Paris", "country": "France", "population_millions": 12}',
    ]
    scripts = {f"s{i}": [Fault.ok(text=text)] for i, text in enumerate(answers)}
    async with ChaosServer(model_scripts=scripts) as server:
        raw = openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)

        def ask(model: str) -> Callable[[], Any]:
            return lambda: l0.structured(
                City,
                lambda: raw.chat.completions.create(model=model, messages=MESSAGES, stream=True),
                retry=NO_RETRY,
            )

        result = await l0.consensus([ask(f"s{i}") for i in range(3)], schema=City)
        assert isinstance(result.value, City)
        assert result.value == City(name="Paris", country="France", population_millions=2)
        assert result.field_agreement == {
            "name": 1.0,
            "country": 1.0,
            "population_millions": pytest.approx(1 / 3),
        }
        assert result.ties == ["population_millions"]
        assert result.agreement == pytest.approx(1 / 3)
        assert sorted(result.dissent) == [1, 2]
        await raw.close()
