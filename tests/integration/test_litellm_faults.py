"""Real ``litellm.acompletion`` streams over HTTP against the chaos server, through ``l0.run``.

LiteLLM talks to the chaos server as an OpenAI-compatible provider (``model="openai/<name>"``,
``api_base=server.base_url``). ``num_retries=0, max_retries=0`` turn LiteLLM's own retries off,
so each L0 attempt is exactly one HTTP request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import litellm
import pytest
from litellm.exceptions import APIError, AuthenticationError, RateLimitError
from litellm.types.utils import ModelResponseStream

import l0
from l0.testing import ChaosServer, Fault, split_words
from tests.integration.faults import recoverable_faults
from tests.runtime_helpers import consume

litellm.suppress_debug_info = True  # no "Give Feedback / Get Help" banner on every error

# LiteLLM's lazily built pydantic models warn about their own typing; not ours to fix.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Item.*ReadOnly:UserWarning"),
    pytest.mark.filterwarnings("ignore:Items.*ReadOnly:UserWarning"),
    pytest.mark.filterwarnings("ignore::pydantic.PydanticDeprecatedSince211"),
]

TEXT = "The quick brown fox jumps over the lazy dog."
FAST = l0.Retry(base_delay=0.0, max_delay=0.0)
MESSAGES = [{"role": "user", "content": "Say the sentence."}]


def factory(server: ChaosServer, model: str = "chaos-1", **extra: Any) -> Callable[[], Any]:
    return lambda: litellm.acompletion(
        model=f"openai/{model}",
        api_base=server.base_url,
        api_key="test",
        messages=MESSAGES,
        stream=True,
        num_retries=0,
        max_retries=0,
        **extra,
    )


async def test_clean_stream_text_usage_finish_reason_and_raw_chunks() -> None:
    async with ChaosServer(text=TEXT) as server:
        result = l0.run(factory(server, stream_options={"include_usage": True}), retry=FAST)
        shown, events = await consume(result)
        assert shown == TEXT
        assert [e.text for e in events if e.is_token] == split_words(TEXT)
        assert result.state.finish_reason == "stop"
        usage = result.state.usage
        assert usage is not None
        assert usage["completion_tokens"] == 9
        assert usage["total_tokens"] == usage["prompt_tokens"] + 9
        assert events[-1].is_complete
        assert events[-1].data["finish_reason"] == "stop"
        raw = result.raw()
        assert all(isinstance(chunk, ModelResponseStream) for chunk in raw)
        assert len(raw) >= 10  # LiteLLM may merge or add chunks; every one of them is kept
        assert any(getattr(chunk, "usage", None) is not None for chunk in raw)
        assert len(server.requests) == 1


RECOVERABLE = [
    *recoverable_faults(),
    # LiteLLM reports an undecodable chunk as a connection error (wrapped mid-stream).
    pytest.param(Fault.malformed_sse(after=3), None, "network", id="malformed_sse"),
]


@pytest.mark.parametrize(("fault", "limits", "category"), RECOVERABLE)
async def test_fault_then_ok_recovers_the_exact_text(
    fault: Fault, limits: l0.Timeout | None, category: str
) -> None:
    async with ChaosServer(script=[fault, Fault.ok()], text=TEXT) as server:
        result = l0.run(factory(server), retry=FAST, timeout=limits)
        started = time.monotonic()
        shown, events = await consume(result)
        assert time.monotonic() - started < 1.5
        assert shown == TEXT
        assert result.state.content == TEXT
        assert len(server.requests) == 2
        assert [e.category.value for e in result.errors] == [category]
        assert sum(1 for e in events if e.is_error) == 1
        assert result.state.network_retry_count == 1


async def test_retry_after_header_sets_the_delay() -> None:
    script = [Fault.status(429, headers={"Retry-After": "0.4"}), Fault.ok()]
    async with ChaosServer(script=script, text=TEXT) as server:
        result = l0.run(factory(server), retry=FAST)
        assert await result.read() == TEXT
        gap = server.requests[1].time - server.requests[0].time
        assert 0.4 <= gap < 1.0
        assert isinstance(result.errors[0].error, RateLimitError)


@pytest.mark.parametrize(
    ("status", "kind"),
    # LiteLLM maps an OpenAI-compatible 403 to its generic APIError (status_code 403).
    [(401, AuthenticationError), (403, APIError)],
)
async def test_auth_errors_raise_the_litellm_exception_without_retry(
    status: int, kind: type[APIError]
) -> None:
    async with ChaosServer(script=[Fault.status(status), Fault.ok()], text=TEXT) as server:
        # A backoff would sleep 20 s: the generous bound below still shows none was taken.
        slow = l0.Retry(base_delay=20, max_delay=20, max_retries=5)
        result = l0.run(factory(server), retry=slow)
        started = time.monotonic()
        with pytest.raises(kind) as caught:
            await result.read()
        assert time.monotonic() - started < 10
        assert caught.value.status_code == status
        assert caught.value.l0.category is l0.ErrorCategory.FATAL  # type: ignore[attr-defined]
        assert len(server.requests) == 1


async def test_persistent_failure_stops_at_max_retries() -> None:
    async with ChaosServer(default=Fault.status(503), text=TEXT) as server:
        result = l0.run(factory(server), retry=l0.Retry(max_retries=2, base_delay=0, max_delay=0))
        with pytest.raises(l0.RetryExhaustedError):
            await result.read()
        assert len(server.requests) == 3


async def test_tool_calls_fire_once_each_with_whole_arguments() -> None:
    calls: list[tuple[str, dict[str, Any]]] = [
        ("get_weather", {"city": "Paris", "units": "metric"}),
        ("search", {"query": "L0 streams", "limit": 5}),
    ]
    async with ChaosServer(script=[Fault.tool_calls(calls, split=3)]) as server:
        seen: list[tuple[str, str, dict[str, Any]]] = []
        result = l0.run(
            factory(server),
            retry=FAST,
            on_tool_call=lambda name, call_id, args: seen.append((name, call_id, args)),
        )
        shown, events = await consume(result)
        await result.wait_callbacks()
        assert shown == ""
        assert seen == [
            ("get_weather", "call_0", {"city": "Paris", "units": "metric"}),
            ("search", "call_1", {"query": "L0 streams", "limit": 5}),
        ]
        assert sum(1 for e in events if e.is_tool_call) == 2
        assert result.state.finish_reason == "tool_calls"
        assert len(server.requests) == 1
        assert result.errors == []


async def test_finish_reason_length_is_reported_and_can_be_retried() -> None:
    script = [Fault.ok(finish_reason="length"), Fault.ok(text="Cut", finish_reason="length")]
    async with ChaosServer(script=[*script, Fault.ok()], text=TEXT) as server:
        result = l0.run(factory(server), retry=FAST)
        _, events = await consume(result)
        assert result.state.finish_reason == "length"
        assert events[-1].data["finish_reason"] == "length"
        retried = l0.run(factory(server), retry=FAST, retry_on_length=True)
        assert await retried.read() == TEXT
        assert retried.state.finish_reason == "stop"
        assert len(server.requests) == 3


async def test_fallback_to_a_second_model() -> None:
    scripts = {"model-a": [Fault.status(503)] * 10, "model-b": [Fault.ok()]}
    async with ChaosServer(model_scripts=scripts, text=TEXT) as server:
        result = l0.run(
            factory(server, "model-a"),
            fallbacks=[factory(server, "model-b")],
            retry=l0.Retry(max_retries=1, base_delay=0, max_delay=0),
        )
        shown, _ = await consume(result)
        assert shown == TEXT
        assert [r.model for r in server.requests] == ["model-a", "model-a", "model-b"]
        assert result.state.fallback_index == 1


async def test_refusal_text_is_dropped_by_litellm_so_it_reads_as_zero_output() -> None:
    # LiteLLM's stream wrapper (1.110) forwards only the role chunk of a refusal: the refusal
    # deltas never reach L0, which sees an empty answer and retries it as zero output. Pinned
    # here so a LiteLLM release that forwards them (and turns this into RefusalError) is noticed.
    script = [Fault.refusal("I can't help with that."), Fault.ok()]
    async with ChaosServer(script=script, text=TEXT) as server:
        result = l0.run(factory(server), retry=FAST)
        shown, _ = await consume(result)
        assert shown == TEXT
        assert [type(attempt.error) for attempt in result.errors] == [l0.errors.ZeroOutputError]
        assert len(server.requests) == 2
