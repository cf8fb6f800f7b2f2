"""The real ``openai`` SDK over HTTP against the chaos server, through ``l0.run``.

Every fault of ``l0.testing`` once, then a clean answer: the final text must be exactly the
scripted text (nothing lost, nothing doubled) and the server must have seen exactly the number
of requests the retry policy allows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletionChunk

import l0
from l0.testing import ChaosServer, Fault, split_words
from tests.integration.faults import recoverable_faults
from tests.runtime_helpers import consume

TEXT = "The quick brown fox jumps over the lazy dog."
FAST = l0.Retry(base_delay=0.0, max_delay=0.0)
MESSAGES: Any = [{"role": "user", "content": "Say the sentence."}]


def client_for(server: ChaosServer) -> openai.AsyncOpenAI:
    # max_retries=0: L0 owns retries, so each L0 attempt is exactly one HTTP request.
    return openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)


def factory(client: openai.AsyncOpenAI, model: str = "chaos-1", **extra: Any) -> Callable[[], Any]:
    return lambda: client.chat.completions.create(
        model=model, messages=MESSAGES, stream=True, **extra
    )


async def test_clean_stream_text_usage_finish_reason_and_raw_chunks() -> None:
    async with ChaosServer(text=TEXT) as server:
        client = client_for(server)
        result = l0.run(factory(client, stream_options={"include_usage": True}), retry=FAST)
        shown, events = await consume(result)
        assert shown == TEXT
        assert result.state.content == TEXT
        # One token per content chunk, exactly as the server split the text.
        assert [e.text for e in events if e.is_token] == split_words(TEXT)
        assert result.state.finish_reason == "stop"
        usage = result.state.usage
        assert usage is not None
        assert usage["completion_tokens"] == 9
        assert usage["total_tokens"] == usage["prompt_tokens"] + 9
        complete = events[-1]
        assert complete.is_complete
        assert complete.data["finish_reason"] == "stop"
        assert complete.usage == usage
        raw = result.raw()
        # role chunk + 9 content chunks + finish chunk + usage chunk, all the SDK's own objects
        assert len(raw) == 12
        assert all(isinstance(chunk, ChatCompletionChunk) for chunk in raw)
        assert raw[0].choices[0].delta.role == "assistant"
        assert raw[-1].choices == []
        assert raw[-1].usage is not None
        assert len(server.requests) == 1
        await client.close()


async def test_whitespace_tokens_are_kept_exactly() -> None:
    tokens = ["  leading", "\n\n", "tabs\t", " ", "end  "]
    async with ChaosServer(tokens=tokens) as server:
        client = client_for(server)
        result = l0.run(factory(client), retry=FAST)
        shown, events = await consume(result)
        assert [e.text for e in events if e.is_token] == tokens
        assert shown == "".join(tokens)
        await client.close()


RECOVERABLE = [
    *recoverable_faults(),
    pytest.param(Fault.malformed_sse(after=3), None, "transient", id="malformed_sse"),
    pytest.param(Fault.malformed_sse(after=0), None, "transient", id="malformed_first"),
]


@pytest.mark.parametrize(("fault", "limits", "category"), RECOVERABLE)
async def test_fault_then_ok_recovers_the_exact_text(
    fault: Fault, limits: l0.Timeout | None, category: str
) -> None:
    async with ChaosServer(script=[fault, Fault.ok()], text=TEXT) as server:
        client = client_for(server)
        result = l0.run(factory(client), retry=FAST, timeout=limits)
        started = time.monotonic()
        shown, events = await consume(result)
        assert time.monotonic() - started < 1.5
        assert shown == TEXT
        assert result.state.content == TEXT
        assert len(server.requests) == 2
        assert [e.category.value for e in result.errors] == [category]
        errors = [e for e in events if e.is_error]
        assert len(errors) == 1
        assert errors[0].data["will_retry"] is True
        assert result.state.network_retry_count == 1
        await client.close()


async def test_retry_after_header_sets_the_delay() -> None:
    script = [Fault.status(429, headers={"Retry-After": "0.4"}), Fault.ok()]
    async with ChaosServer(script=script, text=TEXT) as server:
        client = client_for(server)
        result = l0.run(factory(client), retry=FAST)
        assert await result.read() == TEXT
        gap = server.requests[1].time - server.requests[0].time
        assert 0.4 <= gap < 1.0
        assert isinstance(result.errors[0].error, openai.RateLimitError)
        await client.close()


@pytest.mark.parametrize(
    ("status", "kind"),
    [(401, openai.AuthenticationError), (403, openai.PermissionDeniedError)],
)
async def test_auth_errors_raise_the_sdk_exception_without_retry(
    status: int, kind: type[openai.APIStatusError]
) -> None:
    async with ChaosServer(script=[Fault.status(status), Fault.ok()], text=TEXT) as server:
        client = client_for(server)
        result = l0.run(factory(client), retry=l0.Retry(base_delay=0.5, max_retries=5))
        started = time.monotonic()
        with pytest.raises(kind) as caught:
            await result.read()
        assert time.monotonic() - started < 0.5
        assert caught.value.status_code == status
        assert caught.value.l0.category is l0.ErrorCategory.FATAL  # type: ignore[attr-defined]
        assert len(server.requests) == 1
        await client.close()


async def test_bad_request_is_fatal_and_not_retried() -> None:
    async with ChaosServer(script=[Fault.status(400), Fault.ok()], text=TEXT) as server:
        client = client_for(server)
        with pytest.raises(openai.BadRequestError):
            await l0.run(factory(client), retry=FAST).read()
        assert len(server.requests) == 1
        await client.close()


async def test_persistent_failure_stops_at_max_retries() -> None:
    async with ChaosServer(default=Fault.status(503), text=TEXT) as server:
        client = client_for(server)
        result = l0.run(factory(client), retry=l0.Retry(max_retries=2, base_delay=0, max_delay=0))
        with pytest.raises(l0.RetryExhaustedError) as caught:
            await result.read()
        assert isinstance(caught.value.last_error, openai.InternalServerError)
        assert len(server.requests) == 3
        await client.close()


async def test_tool_calls_fire_once_each_with_whole_arguments() -> None:
    calls: list[tuple[str, dict[str, Any]]] = [
        ("get_weather", {"city": "Paris", "units": "metric"}),
        ("search", {"query": "L0 streams", "limit": 5, "tags": ["a", "b"]}),
    ]
    async with ChaosServer(script=[Fault.tool_calls(calls, split=4)]) as server:
        client = client_for(server)
        seen: list[tuple[str, str, dict[str, Any]]] = []
        result = l0.run(
            factory(client),
            retry=FAST,
            on_tool_call=lambda name, call_id, args: seen.append((name, call_id, args)),
        )
        shown, events = await consume(result)
        await result.wait_callbacks()
        assert shown == ""
        assert seen == [
            ("get_weather", "call_0", {"city": "Paris", "units": "metric"}),
            ("search", "call_1", {"query": "L0 streams", "limit": 5, "tags": ["a", "b"]}),
        ]
        tool_events = [e for e in events if e.is_tool_call]
        assert [e.data["name"] for e in tool_events] == ["get_weather", "search"]
        assert tool_events[0].data["arguments"] == {"city": "Paris", "units": "metric"}
        assert result.state.finish_reason == "tool_calls"
        assert [c["name"] for c in result.state.tool_calls] == ["get_weather", "search"]
        # An answer made only of tool calls is an answer: no zero-output retry.
        assert len(server.requests) == 1
        assert result.errors == []
        await client.close()


async def test_finish_reason_length_is_reported() -> None:
    async with ChaosServer(script=[Fault.ok(finish_reason="length")], text=TEXT) as server:
        client = client_for(server)
        completed: list[str | None] = []
        result = l0.run(
            factory(client),
            retry=FAST,
            on_complete=lambda state: completed.append(state.finish_reason),
        )
        shown, events = await consume(result)
        await result.wait_callbacks()
        # Accepted by default: the truncated text is the answer, and says it was truncated.
        assert shown == TEXT
        assert result.state.finish_reason == "length"
        assert events[-1].data["finish_reason"] == "length"
        assert completed == ["length"]
        assert result.errors == []
        assert len(server.requests) == 1
        await client.close()


async def test_retry_on_length_retries_a_truncated_answer() -> None:
    script = [Fault.ok(text="The quick", finish_reason="length"), Fault.ok()]
    async with ChaosServer(script=script, text=TEXT) as server:
        client = client_for(server)
        result = l0.run(factory(client), retry=FAST, retry_on_length=True)
        shown, events = await consume(result)
        assert shown == TEXT
        assert result.state.finish_reason == "stop"
        assert [type(e.error).__name__ for e in result.errors] == ["TruncatedError"]
        assert result.errors[0].category is l0.ErrorCategory.MODEL
        # The consumer sees why: an error event for the truncated attempt, then its withdrawal.
        kinds = [e.type for e in events if not e.is_token]
        assert kinds == [l0.EventType.ERROR, l0.EventType.RESET, l0.EventType.COMPLETE]
        error = next(e for e in events if e.is_error)
        assert isinstance(error.error, l0.errors.TruncatedError)
        assert "finish_reason='length'" in str(error.error)
        assert error.data["will_retry"] is True
        assert events[-1].data["finish_reason"] == "stop"
        assert len(server.requests) == 2
        await client.close()


async def test_fallback_to_a_second_model() -> None:
    scripts = {"model-a": [Fault.status(503)] * 10, "model-b": [Fault.ok()]}
    async with ChaosServer(model_scripts=scripts, text=TEXT) as server:
        client = client_for(server)
        fallbacks: list[tuple[int, str]] = []
        result = l0.run(
            factory(client, "model-a"),
            fallbacks=[factory(client, "model-b")],
            retry=l0.Retry(max_retries=1, base_delay=0, max_delay=0),
            on_fallback=lambda index, reason: fallbacks.append((index, reason)),
        )
        shown, _ = await consume(result)
        await result.wait_callbacks()
        assert shown == TEXT
        assert [r.model for r in server.requests] == ["model-a", "model-a", "model-b"]
        assert result.state.fallback_index == 1
        assert [index for index, _ in fallbacks] == [1]
        await client.close()


async def test_fatal_error_on_primary_moves_to_the_fallback() -> None:
    scripts = {"model-a": [Fault.status(404)], "model-b": [Fault.ok()]}
    async with ChaosServer(model_scripts=scripts, text=TEXT) as server:
        client = client_for(server)
        result = l0.run(
            factory(client, "model-a"), fallbacks=[factory(client, "model-b")], retry=FAST
        )
        assert await result.read() == TEXT
        assert [r.model for r in server.requests] == ["model-a", "model-b"]
        await client.close()


async def test_many_faults_in_a_row_within_the_budget() -> None:
    script = [
        Fault.status(429, headers={"Retry-After": "0"}),
        Fault.drop_after(2),
        Fault.malformed_sse(after=5),
        Fault.zero_output(),
        Fault.status(500),
        Fault.ok(),
    ]
    async with ChaosServer(script=script, text=TEXT) as server:
        client = client_for(server)
        result = l0.run(factory(client), retry=l0.Retry(max_retries=5, base_delay=0, max_delay=0))
        shown, events = await consume(result)
        assert shown == TEXT
        assert len(server.requests) == 6
        assert sum(1 for e in events if e.is_error) == 5
        await client.close()


FAULTS = st.sampled_from(
    [
        Fault.status(429, headers={"Retry-After": "0"}),
        Fault.status(500),
        Fault.status(503),
        Fault.drop_after(0),
        Fault.drop_after(4),
        Fault.malformed_sse(after=1),
        Fault.malformed_sse(after=8),
        Fault.zero_output(),
    ]
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(schedule=st.lists(FAULTS, max_size=4))
async def test_no_token_lost_or_doubled_across_fault_schedules(
    chaos_server: ChaosServer, schedule: list[Fault]
) -> None:
    chaos_server.reset()
    chaos_server.set_script([*schedule, Fault.ok(text=TEXT)])
    client = client_for(chaos_server)
    result = l0.run(
        factory(client), retry=l0.Retry(max_retries=len(schedule), base_delay=0, max_delay=0)
    )
    shown, events = await consume(result)
    assert shown == TEXT
    assert result.state.content == TEXT
    assert len(chaos_server.requests) == len(schedule) + 1
    assert sum(1 for e in events if e.is_error) == len(schedule)
    await client.close()


async def test_refusal_is_retried_as_a_model_error_then_falls_back() -> None:
    # A refusal is the model's answer, not zero output: MODEL errors use Retry.attempts, and the
    # fallback model gets the request once they are used up.
    scripts = {"strict": [Fault.refusal("I can't help with that.")] * 5, "lenient": [Fault.ok()]}
    async with ChaosServer(model_scripts=scripts, text=TEXT) as server:
        client = client_for(server)
        result = l0.run(
            factory(client, "strict"),
            fallbacks=[factory(client, "lenient")],
            retry=l0.Retry(attempts=1, base_delay=0.0, max_delay=0.0),
        )
        shown, _ = await consume(result)
        assert shown == TEXT
        assert [r.model for r in server.requests] == ["strict", "strict", "lenient"]
        errors = [attempt.error for attempt in result.errors]
        assert [type(e) for e in errors] == [l0.errors.RefusalError] * 2
        assert [attempt.category for attempt in result.errors] == [l0.ErrorCategory.MODEL] * 2
        await client.close()


async def test_a_refusal_that_persists_is_raised_with_its_text() -> None:
    async with ChaosServer(default=Fault.refusal(tokens=["Sorry", ", no."])) as server:
        client = client_for(server)
        result = l0.run(factory(client), retry=l0.Retry(attempts=0, base_delay=0, max_delay=0))
        with pytest.raises(l0.RetryExhaustedError) as caught:
            await result.read()
        last = caught.value.last_error
        assert isinstance(last, l0.errors.RefusalError)
        assert last.refusal == "Sorry, no."
        assert result.state.content == ""
        assert len(server.requests) == 1
        await client.close()
