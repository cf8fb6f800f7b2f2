"""Recovery through the real openai SDK and a wrapped client against the chaos server.

No test here writes a continuation prompt: the wrapped client continues on its own.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

import openai
import pydantic
import pytest
from openai.types.chat import ChatCompletionChunk

import l0
import l0.config
import l0.errors
import l0.testing
from l0.testing import ChaosServer, Fault, split_words

LONG = (
    "Rivers carve their valleys over thousands of years, moving sand and stone downstream "
    "with every flood. Where the current slows, the river drops what it carries and builds "
    "wide plains of rich soil. Farmers settled on these plains early, because the water and "
    "the soil together fed whole cities, and the yearly floods renewed the fields each spring."
)


def wrapped(server: ChaosServer, **options: Any) -> Any:
    client = openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)
    return l0.wrap(client, **options)


async def test_a_fallback_that_starts_over_after_a_long_kept_text_doubles_nothing() -> None:
    assert len(LONG) > 300  # longer than max_overlap, the old look-back
    tokens = split_words(LONG)
    assert len(tokens) > 45
    dead = [Fault.drop_after(45), *[Fault.status(503)] * 5]
    async with ChaosServer(tokens=tokens, model_scripts={"primary": dead}) as server:
        client = wrapped(
            server,
            retry=l0.Retry(max_retries=1, base_delay=0.0, max_delay=0.0),
            continue_from_last_good_token=True,
            fallback_models=["backup"],
        )
        result = await client.chat.completions.create(
            model="primary", messages=[{"role": "user", "content": "Rivers?"}], stream=True
        )
        shown = ""
        async for event in result:
            if event.is_token:
                shown += event.text or ""
            elif event.is_reset:
                shown = shown[: len(shown) - len(event.data["withdrawn"])]
        assert result.state.content == LONG
        assert shown == LONG
        assert [r.model for r in server.requests] == ["primary", "primary", "backup"]


def roles(request: Any) -> list[str]:
    return [message["role"] for message in request.messages]


async def test_a_fallback_rejecting_the_prefill_continues_through_a_user_turn() -> None:
    tokens = split_words(LONG)
    dead = [Fault.drop_after(20), *[Fault.status(503)] * 10]
    events: list[l0.ObservabilityEvent] = []
    async with ChaosServer(
        tokens=tokens, model_scripts={"primary": dead}, default=Fault.rejects_prefill()
    ) as server:
        client = wrapped(
            server,
            retry=l0.Retry(max_retries=0),
            continue_from_last_good_token=True,
            fallback_models=["backup"],
            on_event=events.append,
        )
        request = {"messages": [{"role": "user", "content": "Rivers?"}], "stream": True}
        result = await client.chat.completions.create(model="primary", **request)
        assert await result.read() == LONG
        await result.wait_callbacks()
        first = server.requests
        assert [r.model for r in first] == ["primary", "backup", "backup"]
        assert roles(first[1])[-1] == "assistant"  # the prefill, rejected with a 400
        assert first[2].fault.kind == "rejects_prefill"
        kept = "".join(tokens[:20])
        assert roles(first[2]) == ["user", "user"]
        assert kept in first[2].messages[-1]["content"]
        chosen = [e.data for e in events if e.type == "CONTINUATION_STRATEGY"]
        assert chosen == [{"strategy": "user", "rejected": ["prefill"]}]

        # A second session in the process goes straight to what works for that model.
        server.reset()
        server.set_script(dead, model="primary")
        again = await client.chat.completions.create(model="primary", **request)
        assert await again.read() == LONG
        assert [roles(r)[-1] for r in server.requests] == ["user", "user"]
        assert len(server.requests) == 2


async def test_a_fallback_that_ignores_the_continuation_doubles_nothing() -> None:
    tokens = split_words(LONG)
    dead = [Fault.drop_after(30), *[Fault.status(503)] * 10]
    async with ChaosServer(
        tokens=tokens, model_scripts={"primary": dead}, default=Fault.starts_over()
    ) as server:
        client = wrapped(
            server,
            retry=l0.Retry(max_retries=0),
            continue_from_last_good_token=True,
            fallback_models=["backup"],
        )
        result = await client.chat.completions.create(
            model="primary", messages=[{"role": "user", "content": "Rivers?"}], stream=True
        )
        shown = ""
        async for event in result:
            assert not event.is_reset
            if event.is_token:
                shown += event.text or ""
        assert shown == LONG
        assert roles(server.requests[1])[-1] == "assistant"  # asked to continue; ignored it


async def test_one_deadline_for_the_session_never_sleeps_past_it() -> None:
    busy = Fault.status(503, headers={"Retry-After": "0.3"})
    events: list[l0.ObservabilityEvent] = []
    async with ChaosServer(default=busy) as server:
        client = wrapped(
            server,
            timeout=l0.Timeout(total=1.0),
            retry=l0.Retry(max_retries=100, base_delay=0.0, max_delay=0.0),
            on_event=events.append,
        )
        result = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        with pytest.raises(l0.errors.DeadlineExceededError) as caught:
            await result.read()
        raised_ms = time.time_ns() / 1_000_000
        await result.wait_callbacks()
        # Measured from the session's start (the first request also sets up the SDK client).
        begin = next(e.ts for e in events if e.type == "SESSION_START")
        assert raised_ms - begin <= 1100
        times = [r.time for r in server.requests]
        assert len(times) >= 2
        assert all(b - a >= 0.29 for a, b in itertools.pairwise(times))
        # No wait was started that would end after the deadline.
        waits = [(e.ts - begin, e.data["delay_ms"]) for e in events if e.type == "RETRY_ATTEMPT"]
        assert waits
        assert all(at + delay < 1000 for at, delay in waits)
        assert all(delay >= 300 for _, delay in waits)
        error = caught.value
        assert error.state is not None
        # Every attempt is reported; the last may be cut by the deadline before it is sent.
        assert len(error.errors) == error.state.attempt
        assert error.state.attempt - len(times) in (0, 1)
        assert error.configured == 1.0


async def test_the_deadline_closes_a_stalled_connection_at_once() -> None:
    async with ChaosServer(script=[Fault.stall_after(3, seconds=30)]) as server:
        client = wrapped(server, timeout=l0.Timeout(total=0.5))
        result = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        with pytest.raises(l0.errors.DeadlineExceededError):
            await result.read()
        assert time.monotonic() - server.requests[0].time < 2.0  # not the 30 s stall
        for _ in range(100):
            if server.in_flight == 0:
                break
            await asyncio.sleep(0.02)
        assert server.in_flight == 0
        assert len(server.requests) == 1


async def test_a_silent_primary_is_abandoned_after_one_attempt() -> None:
    silent = [Fault.slow_first_token(10)] * 5
    async with ChaosServer(text=LONG, model_scripts={"primary": silent}) as server:
        client = wrapped(server, timeout=l0.Timeout(initial_token=1), fallback_models=["backup"])
        result = await client.chat.completions.create(
            model="primary", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        assert await result.read() == LONG
        # From the primary's request (the first request also sets up the SDK client): ~1 s.
        assert time.monotonic() - server.requests[0].time < 2.5
        assert [r.model for r in server.requests] == ["primary", "backup"]


async def test_a_stall_mid_answer_moves_to_the_fallback_which_continues() -> None:
    tokens = split_words(LONG)
    stalled = [Fault.stall_after(12, seconds=2.0)] * 5
    events: list[l0.ObservabilityEvent] = []
    async with ChaosServer(
        tokens=tokens, model_scripts={"primary": stalled}, default=Fault.continues()
    ) as server:
        client = wrapped(
            server,
            timeout=l0.Timeout(initial_token=5, inter_token=1),
            continue_from_last_good_token=True,
            fallback_models=["backup"],
            on_event=events.append,
        )
        result = await client.chat.completions.create(
            model="primary", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        assert await result.read() == LONG
        await result.wait_callbacks()
        assert [r.model for r in server.requests] == ["primary", "backup"]
        prefill = server.requests[1].messages[-1]
        assert prefill == {"role": "assistant", "content": "".join(tokens[:12])}
        routed = [e.data for e in events if e.type == "FAILURE_ROUTED"]
        assert [(d["failure"], d["decision"]) for d in routed] == [
            ("inter_token_timeout", "fallback")
        ]
        timeouts = [e for e in events if e.type == "TIMEOUT_TRIGGERED"]
        assert len(timeouts) == 1


async def test_a_content_policy_rejection_is_raised_with_no_fallback_request() -> None:
    body = {
        "error": {
            "message": "Your request was rejected as a result of our safety system.",
            "type": "invalid_request_error",
            "param": None,
            "code": "content_policy_violation",
        }
    }
    events: list[l0.ObservabilityEvent] = []
    async with ChaosServer(model_scripts={"primary": [Fault.status(400, body)]}) as server:
        client = wrapped(server, fallback_models=["backup"], on_event=events.append)
        result = await client.chat.completions.create(
            model="primary", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        with pytest.raises(openai.BadRequestError):
            await result.read()
        await result.wait_callbacks()
        assert [r.model for r in server.requests] == ["primary"]
        routed = [e.data for e in events if e.type == "FAILURE_ROUTED"]
        assert [(d["failure"], d["decision"]) for d in routed] == [("content_policy", "raise")]

        # Configured otherwise, the same rejection goes to the fallback.
        server.reset()
        server.set_script([Fault.status(400, body)], model="primary")
        retry = l0.Retry(fallback_on=["content_policy"])
        again = await client.chat.completions.create(
            model="primary",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            l0_options={"retry": retry},
        )
        assert await again.read() == l0.testing.DEFAULT_TEXT
        assert [r.model for r in server.requests] == ["primary", "backup"]


async def test_a_prose_answer_cut_by_length_three_times_is_stitched_exactly() -> None:
    tokens = split_words(LONG)
    cut = [Fault.continues(max_tokens=12)] * 3
    async with ChaosServer(tokens=tokens, script=cut, default=Fault.continues()) as server:
        client = wrapped(server, continue_on_length=3)
        result = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "Rivers?"}], stream=True
        )
        shown = ""
        async for event in result:
            assert not event.is_reset
            if event.is_token:
                shown += event.text or ""
        assert shown == LONG
        assert result.state.content == LONG
        assert result.state.length_continuations == 3
        assert result.state.finish_reason == "stop"
        assert len(server.requests) == 4
        assert server.requests[3].messages[-1] == {
            "role": "assistant",
            "content": "".join(tokens[:36]),
        }


DOCUMENT = {
    "title": "Rivers and the plains they build",
    "facts": [
        {"name": "silt", "note": 'carried "downstream" by every flood'},
        {"name": "plains", "note": "rich soil where the current slows", "depth_m": 12.5},
    ],
    "settled": True,
    "source": None,
}


async def test_a_json_answer_cut_by_length_three_times_is_a_valid_document() -> None:
    text = json.dumps(DOCUMENT)
    # Small chunks so that the cuts fall inside keys and string values.
    tokens = [text[i : i + 7] for i in range(0, len(text), 7)]
    cut = [Fault.continues(max_tokens=9)] * 3
    async with ChaosServer(tokens=tokens, script=cut, default=Fault.continues()) as server:
        client = wrapped(server, continue_on_length=3)
        result = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "JSON please"}], stream=True
        )
        answer = await result.read()
        assert json.loads(answer) == DOCUMENT
        assert answer == text
        assert result.state.length_continuations == 3


async def test_continuations_on_length_are_limited_to_n() -> None:
    cut = [Fault.continues(max_tokens=3)] * 10
    async with ChaosServer(text=LONG, script=cut) as server:
        client = wrapped(server, continue_on_length=2)
        result = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "Rivers?"}], stream=True
        )
        answer = await result.read()
        assert answer == "".join(split_words(LONG)[:9])
        assert result.state.finish_reason == "length"
        assert result.state.length_continuations == 2


async def test_usage_of_every_attempt_and_the_share_kept() -> None:
    bad = "As an AI language model, I cannot answer that about rivers."

    def no_meta(ctx: l0.GuardrailContext) -> list[l0.GuardrailViolation]:
        found = "As an AI" in ctx.content
        return [l0.GuardrailViolation("no_meta", "meta statement")] if found else []

    script = [Fault.drop_after(10), Fault.ok(text=bad), Fault.ok()]
    summaries: list[l0.ObservabilityEvent] = []
    async with ChaosServer(text=LONG, script=script) as server:
        client = wrapped(
            server,
            retry=l0.Retry(base_delay=0.0, max_delay=0.0),
            guardrails=[l0.GuardrailRule("no_meta", check=no_meta)],
            on_event=lambda e: summaries.append(e) if e.type == "SESSION_SUMMARY" else None,
        )
        result = await client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "Rivers?"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        complete = [event async for event in result if event.is_complete]
        await result.wait_callbacks()
    state = result.state
    assert state.content == LONG
    rows = state.attempts
    assert [r.outcome for r in rows] == ["error", "error", "success"]
    assert [r.attempt for r in rows] == [1, 2, 3]
    # The drop sent no usage: estimated from the 10 tokens' characters.
    dropped = "".join(split_words(LONG)[:10])
    assert rows[0].estimated
    assert rows[0].completion_tokens == -(-len(dropped) // 4)
    assert rows[0].kept_tokens == 0
    # The guardrail retry ran to the end, so the provider's usage counts it.
    assert not rows[1].estimated
    assert rows[1].completion_tokens == len(split_words(bad))
    assert rows[1].kept_tokens == 0
    assert not rows[2].estimated
    assert rows[2].completion_tokens == rows[2].kept_tokens == len(split_words(LONG))
    assert rows[2].prompt_tokens is not None
    assert state.tokens_paid == sum(r.completion_tokens for r in rows)
    assert state.tokens_kept == rows[2].kept_tokens
    assert state.usage_estimated
    data = complete[0].data
    assert (data["tokens_paid"], data["tokens_kept"]) == (state.tokens_paid, state.tokens_kept)
    assert [row["outcome"] for row in data["attempt_usage"]] == ["error", "error", "success"]
    summary = summaries[0].data
    assert (summary["tokens_paid"], summary["tokens_kept"]) == (
        state.tokens_paid,
        state.tokens_kept,
    )
    assert summary["usage_estimated"] is True


async def test_a_late_first_token_is_hedged_and_the_first_connection_closed() -> None:
    events: list[l0.ObservabilityEvent] = []
    late = [Fault.slow_first_token(2.0)]
    async with ChaosServer(text=LONG, model_scripts={"primary": late}) as server:
        client = wrapped(
            server, hedge_after=0.3, fallback_models=["backup"], on_event=events.append
        )
        result = await client.chat.completions.create(
            model="primary", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        assert await result.read() == LONG
        started = server.requests[0].time  # the primary's request reached the server
        assert time.monotonic() - started < 1.5  # well before the primary's 2 s
        closed_by = None
        for _ in range(50):
            if server.in_flight == 0:
                closed_by = time.monotonic() - started
                break
            await asyncio.sleep(0.02)
        assert closed_by is not None
        assert closed_by < 2.0  # the primary was cut, not finished
        await result.wait_callbacks()
    assert [r.model for r in server.requests] == ["primary", "backup"]
    state = result.state
    assert state.attempt == 2
    assert state.fallback_index == 1
    assert [(a.attempt, a.outcome) for a in state.attempts] == [(1, "hedge_lost"), (2, "success")]
    hedges = [(e.type.value, dict(e.data)) for e in events if e.type.value.startswith("HEDGE")]
    assert hedges == [
        ("HEDGE_START", {"attempt": 2, "fallback_index": 1, "after_ms": 300}),
        ("HEDGE_END", {"winner": "hedge", "winner_attempt": 2, "loser_attempt": 1}),
    ]


async def test_a_hedge_without_fallbacks_runs_the_same_model_again() -> None:
    async with ChaosServer(text=LONG, script=[Fault.slow_first_token(2.0)]) as server:
        client = wrapped(server, hedge_after=0.3)
        result = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        assert await result.read() == LONG
        assert len(server.requests) == 2


async def test_a_hedge_winners_raw_chunks_are_the_sdks_objects() -> None:
    late = {"primary": [Fault.slow_first_token(2.0)]}
    async with ChaosServer(text=LONG, model_scripts=late) as s:
        client = wrapped(s, hedge_after=0.3, fallback_models=["backup"])
        result = await client.chat.completions.create(
            model="primary", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        assert await result.read() == LONG
        assert result.state.fallback_index == 1
        raw = result.raw()
        assert raw
        assert all(isinstance(chunk, ChatCompletionChunk) for chunk in raw)
        assert {chunk.model for chunk in raw} == {"backup"}
        text = "".join(c.choices[0].delta.content or "" for c in raw if c.choices)
        assert text == LONG


async def test_a_first_token_in_time_starts_no_hedge() -> None:
    async with ChaosServer(text=LONG) as server:
        client = wrapped(server, hedge_after=1.0, fallback_models=["backup"])
        result = await client.chat.completions.create(
            model="primary", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        assert await result.read() == LONG
        assert [r.model for r in server.requests] == ["primary"]
        assert [a.outcome for a in result.state.attempts] == ["success"]


async def test_config_chooses_the_continuation_strategy(
    isolated_config: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("L0_CONTINUATION_STRATEGIES", "user")
    tokens = split_words(LONG)
    async with ChaosServer(
        tokens=tokens, script=[Fault.drop_after(15)], default=Fault.continues()
    ) as server:
        client = wrapped(
            server,
            retry=l0.Retry(base_delay=0.0, max_delay=0.0),
            continue_from_last_good_token=True,
        )
        result = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "Rivers?"}], stream=True
        )
        assert await result.read() == LONG
        assert roles(server.requests[1]) == ["user", "user"]


def test_a_bad_configured_strategy_is_named(
    isolated_config: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("L0_CONTINUATION_STRATEGIES", "prefil")
    with pytest.raises(l0.ConfigError, match="L0_CONTINUATION_STRATEGIES"):
        l0.config.load_config()


async def test_structured_output_completes_a_json_answer_cut_by_length() -> None:
    class Fact(pydantic.BaseModel):
        name: str
        note: str
        depth_m: float | None = None

    class Document(pydantic.BaseModel):
        title: str
        facts: list[Fact]
        settled: bool
        source: str | None

    text = json.dumps(DOCUMENT)
    tokens = [text[i : i + 5] for i in range(0, len(text), 5)]
    cut = [Fault.continues(max_tokens=12)] * 3
    async with ChaosServer(tokens=tokens, script=cut, default=Fault.continues()) as server:
        client = wrapped(server, continue_on_length=3)
        got = await l0.structured(
            Document,
            lambda: client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "JSON"}], stream=True
            ),
        )
        assert got.data == Document.model_validate(DOCUMENT)
        assert not got.corrections
        assert len(server.requests) == 4


async def test_a_winning_hedge_that_then_drops_is_retried_on_its_own_model() -> None:
    tokens = split_words(LONG)
    scripts = {"primary": [Fault.slow_first_token(2.0)], "backup": [Fault.drop_after(12)]}
    async with ChaosServer(
        tokens=tokens, model_scripts=scripts, default=Fault.continues()
    ) as server:
        client = wrapped(
            server,
            hedge_after=0.3,
            continue_from_last_good_token=True,
            retry=l0.Retry(base_delay=0.0, max_delay=0.0),
            fallback_models=["backup"],
        )
        result = await client.chat.completions.create(
            model="primary", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        assert await result.read() == LONG
    assert [r.model for r in server.requests] == ["primary", "backup", "backup"]
    assert server.requests[2].messages[-1] == {
        "role": "assistant",
        "content": "".join(tokens[:12]),
    }
    outcomes = [(a.attempt, a.fallback_index, a.outcome) for a in result.state.attempts]
    assert outcomes == [(1, 0, "hedge_lost"), (2, 1, "error"), (3, 1, "success")]
