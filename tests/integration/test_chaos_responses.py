"""``ChaosServer``'s ``/v1/responses`` and ``/v1/embeddings``, through the real ``openai`` SDK."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from openai.types.responses import ResponseCompletedEvent, ResponseTextDeltaEvent

import l0
from l0.errors import RefusalError
from l0.testing import ChaosServer, Fault

FAST = l0.Retry(base_delay=0.0, max_delay=0.0)
TEXT = "The Responses API streams typed events."


def client_for(server: ChaosServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)


def responses(client: openai.AsyncOpenAI) -> Any:
    return lambda: client.responses.create(model="chaos-1", input="Say it.", stream=True)


async def test_the_sdk_parses_the_responses_stream() -> None:
    async with ChaosServer([Fault.ok(text=TEXT)]) as server:
        client = client_for(server)
        stream = await client.responses.create(model="chaos-1", input="Say it.", stream=True)
        kinds = []
        text = ""
        async for event in stream:
            kinds.append(event.type)
            if isinstance(event, ResponseTextDeltaEvent):
                text += event.delta
            if isinstance(event, ResponseCompletedEvent):
                assert event.response.output_text == TEXT
                assert event.response.usage is not None
        assert text == TEXT
        assert kinds[:2] == ["response.created", "response.in_progress"]
        assert kinds[-1] == "response.completed"
        assert server.requests[0].path == "/v1/responses"
        assert server.requests[0].messages == [{"role": "user", "content": "Say it."}]
        whole = await client.responses.create(model="chaos-1", input="again")
        assert whole.status == "completed"
        assert whole.output_text  # the server's default answer, not streamed
        await client.close()


async def test_l0_retries_a_dropped_responses_stream() -> None:
    async with ChaosServer([Fault.drop_after(3), Fault.ok(text=TEXT)]) as server:
        client = client_for(server)
        result = l0.run(responses(client), retry=FAST)
        assert await result.read() == TEXT
        assert len(server.requests) == 2
        assert result.state.finish_reason == "stop"
        await client.close()


async def test_l0_retries_a_responses_http_error() -> None:
    async with ChaosServer([Fault.status(503), Fault.ok(text=TEXT)]) as server:
        client = client_for(server)
        result = l0.run(responses(client), retry=FAST)
        assert await result.read() == TEXT
        assert len(server.requests) == 2
        await client.close()


async def test_responses_incomplete_and_refusal() -> None:
    async with ChaosServer(
        [Fault.ok(text=TEXT, finish_reason="length"), Fault.refusal("I can't help with that.")]
    ) as server:
        client = client_for(server)
        result = l0.run(responses(client), retry=FAST)
        assert await result.read() == TEXT
        assert result.state.finish_reason == "length"
        with pytest.raises(l0.RetryExhaustedError) as info:
            await l0.run(responses(client), retry=l0.Retry(attempts=0)).read()
        assert isinstance(info.value.last_error, RefusalError)
        await client.close()


async def test_responses_tool_calls() -> None:
    call = Fault.tool_calls([("get_weather", {"city": "Oslo"})])
    async with ChaosServer([call]) as server:
        client = client_for(server)
        result = l0.run(responses(client), retry=FAST)
        await result.read()
        assert [c["name"] for c in result.state.tool_calls] == ["get_weather"]
        assert result.state.finish_reason == "tool_calls"
        await client.close()


async def test_embeddings_pass_through_a_wrapped_client() -> None:
    async with ChaosServer([Fault.ok()]) as server:
        raw = client_for(server)
        client = l0.wrap(raw, retry=FAST)
        first = await client.embeddings.create(model="embed-1", input=["a cat", "a dog"])
        again = await raw.embeddings.create(model="embed-1", input="a cat")
        assert [d.index for d in first.data] == [0, 1]
        assert first.data[0].embedding == again.data[0].embedding
        assert first.data[0].embedding != first.data[1].embedding
        assert [r.path for r in server.requests] == ["/v1/embeddings", "/v1/embeddings"]
        await raw.close()


async def test_embeddings_answer_a_status_fault() -> None:
    async with ChaosServer([Fault.status(429)]) as server:
        client = client_for(server)
        with pytest.raises(openai.RateLimitError):
            await client.embeddings.create(model="embed-1", input="x")
        await client.close()
