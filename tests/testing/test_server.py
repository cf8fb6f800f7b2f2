"""The chaos server, driven through the real openai SDK and through raw httpx."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionChunk

from l0.testing import (
    DEFAULT_REFUSAL,
    DEFAULT_TEXT,
    ChaosServer,
    Fault,
    RecordedRequest,
    split_words,
)

MESSAGES: Any = [{"role": "user", "content": "Say hello to the world"}]
TOKENS = ["The", " quick", " brown", " fox."]


def client_for(server: ChaosServer, **options: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0, **options)


async def open_stream(
    client: openai.AsyncOpenAI, model: str = "chaos-1", **options: Any
) -> openai.AsyncStream[ChatCompletionChunk]:
    stream: openai.AsyncStream[ChatCompletionChunk] = await client.chat.completions.create(
        model=model, messages=MESSAGES, stream=True, **options
    )
    return stream


async def collect(stream: openai.AsyncStream[ChatCompletionChunk]) -> list[ChatCompletionChunk]:
    return [chunk async for chunk in stream]


async def drain(stream: openai.AsyncStream[ChatCompletionChunk], into: list[str]) -> None:
    """Collect content deltas into ``into`` until the stream ends or raises."""
    async for chunk in stream:
        into += content_of([chunk])


def content_of(chunks: list[ChatCompletionChunk]) -> list[str]:
    return [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]


async def raw_events(server: ChaosServer, body: dict[str, Any]) -> tuple[httpx.Response, list[str]]:
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{server.base_url}/chat/completions", json=body)
    text = response.text
    assert text.endswith("\n\n")
    return response, text[:-2].split("\n\n")


@pytest.fixture
async def server() -> AsyncIterator[ChaosServer]:
    async with ChaosServer(tokens=TOKENS) as running:
        yield running


# Tokens and text.


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("Hello world", ["Hello", " world"]),
        ("  lead and trail  ", ["  lead", " and", " trail", "  "]),
        ("a\nb\tc", ["a", "\nb", "\tc"]),
        ("", []),
        ("   ", ["   "]),
    ],
)
def test_split_words_keeps_every_character(text: str, tokens: list[str]) -> None:
    assert split_words(text) == tokens
    assert "".join(split_words(text)) == text


# Clean streams.


async def test_ok_stream_assembles_the_scripted_text_exactly() -> None:
    text = "Hello world, how  are you?\n"
    async with ChaosServer(text=text) as server, client_for(server) as client:
        chunks = await collect(await open_stream(client))
    assert all(isinstance(chunk, ChatCompletionChunk) for chunk in chunks)
    assert content_of(chunks) == split_words(text)
    assert "".join(content_of(chunks)) == text
    first, last = chunks[0], chunks[-1]
    assert first.choices[0].delta.role == "assistant"
    assert first.choices[0].delta.content == ""
    assert last.choices[0].finish_reason == "stop"
    assert last.usage is None
    assert {chunk.id for chunk in chunks} == {"chatcmpl-l0chaos0"}
    assert {chunk.model for chunk in chunks} == {"chaos-1"}


async def test_default_text_and_exact_tokens(server: ChaosServer) -> None:
    server.set_script([Fault.ok(), Fault.ok(tokens=["x", "y"]), Fault.ok(text="one two")])
    async with ChaosServer() as plain, client_for(plain) as client:
        assert "".join(content_of(await collect(await open_stream(client)))) == DEFAULT_TEXT
    async with client_for(server) as client:
        assert content_of(await collect(await open_stream(client))) == TOKENS
        assert content_of(await collect(await open_stream(client))) == ["x", "y"]
        assert content_of(await collect(await open_stream(client))) == ["one", " two"]


async def test_usage_chunk_when_requested(server: ChaosServer) -> None:
    async with client_for(server) as client:
        stream = await open_stream(client, stream_options={"include_usage": True})
        chunks = await collect(stream)
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert usage_chunk.usage.completion_tokens == len(TOKENS)
    assert usage_chunk.usage.prompt_tokens == 5
    assert usage_chunk.usage.total_tokens == 5 + len(TOKENS)
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert all(chunk.usage is None for chunk in chunks[:-1])


async def test_wire_format_matches_openai(server: ChaosServer) -> None:
    body = {
        "model": "gpt-x",
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    response, events = await raw_events(server, body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-request-id"] == "req_l0chaos_0"
    assert all(event.startswith("data: ") for event in events)
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(event.removeprefix("data: ")) for event in events[:-1]]
    for chunk in chunks:
        assert list(chunk) == [
            "id",
            "object",
            "created",
            "model",
            "system_fingerprint",
            "choices",
            "usage",
        ]
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["model"] == "gpt-x"
        assert isinstance(chunk["created"], int)
    assert chunks[0]["choices"] == [
        {
            "index": 0,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": None,
            "finish_reason": None,
        }
    ]
    assert [c["choices"][0]["delta"] for c in chunks[1:5]] == [{"content": t} for t in TOKENS]
    assert chunks[5]["choices"][0]["delta"] == {}
    assert chunks[5]["choices"][0]["finish_reason"] == "stop"
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 4


async def test_finish_reason_length(server: ChaosServer) -> None:
    server.set_script([Fault.ok(text="cut sh", finish_reason="length")])
    async with client_for(server) as client:
        chunks = await collect(await open_stream(client))
    assert "".join(content_of(chunks)) == "cut sh"
    assert chunks[-1].choices[0].finish_reason == "length"


async def test_ok_delay_paces_the_chunks(server: ChaosServer) -> None:
    server.set_script([Fault.ok(delay=0.05)])
    async with client_for(server) as client:
        stream = await open_stream(client)
        arrivals = [time.monotonic() async for chunk in stream if content_of([chunk])]
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert len(arrivals) == len(TOKENS)
    assert all(gap >= 0.04 for gap in gaps)


# HTTP status faults.

STATUS_ERRORS: list[tuple[int, type[openai.APIStatusError]]] = [
    (400, openai.BadRequestError),
    (401, openai.AuthenticationError),
    (403, openai.PermissionDeniedError),
    (404, openai.NotFoundError),
    (429, openai.RateLimitError),
    (500, openai.InternalServerError),
    (502, openai.InternalServerError),
    (503, openai.InternalServerError),
]


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize(("code", "error"), STATUS_ERRORS)
async def test_status_fault_raises_the_matching_sdk_error(
    server: ChaosServer, code: int, error: type[openai.APIStatusError], stream: bool
) -> None:
    server.set_script([Fault.status(code)])
    async with client_for(server) as client:
        with pytest.raises(error) as caught:
            await client.chat.completions.create(model="m", messages=MESSAGES, stream=stream)
    assert caught.value.status_code == code
    body = caught.value.body
    assert isinstance(body, dict)
    assert set(body) >= {"message", "type", "code"}
    assert f"status {code}" in body["message"]


async def test_rate_limit_retry_after_is_readable(server: ChaosServer) -> None:
    server.set_script([Fault.status(429, headers={"Retry-After": "1"})])
    async with client_for(server) as client:
        with pytest.raises(openai.RateLimitError) as caught:
            await open_stream(client)
    assert caught.value.response.headers["retry-after"] == "1"
    assert caught.value.code == "rate_limit_exceeded"


async def test_custom_status_bodies(server: ChaosServer) -> None:
    custom = {"error": {"message": "slow down", "type": "tokens", "code": "tpm"}}
    html = Fault.status(502, body="<html>bad</html>", headers={"Content-Type": "text/html"})
    server.set_script([Fault.status(429, body=custom), html])
    async with client_for(server) as client:
        with pytest.raises(openai.RateLimitError) as limited:
            await open_stream(client)
        with pytest.raises(openai.InternalServerError) as gateway:
            await open_stream(client)
    assert limited.value.message == "Error code: 429 - slow down"
    assert gateway.value.response.text == "<html>bad</html>"
    assert gateway.value.response.headers.get_list("content-type") == ["text/html"]


async def test_script_advances_then_falls_back_to_the_default() -> None:
    script = [Fault.status(500), Fault.status(503), Fault.ok(text="third")]
    async with ChaosServer(script, default=Fault.ok(text="later")) as server:
        async with client_for(server) as client:
            for _ in range(2):
                with pytest.raises(openai.InternalServerError):
                    await open_stream(client)
            assert content_of(await collect(await open_stream(client))) == ["third"]
            assert content_of(await collect(await open_stream(client))) == ["later"]
        assert [r.fault for r in server.requests] == [*script, Fault.ok(text="later")]


# Broken streams.


@pytest.mark.parametrize("k", [0, 2, 4])
async def test_drop_after_k_chunks_is_a_connection_error(server: ChaosServer, k: int) -> None:
    server.set_script([Fault.drop_after(k)])
    received: list[str] = []
    async with client_for(server) as client:
        stream = await open_stream(client)
        with pytest.raises(openai.APIConnectionError) as caught:
            await drain(stream, received)
    assert received == TOKENS[:k]
    assert server.requests[0].fault == Fault.drop_after(k)
    assert type(caught.value.__cause__).__name__ == "RemoteProtocolError"


async def test_drop_after_with_raw_httpx(server: ChaosServer) -> None:
    server.set_script([Fault.drop_after(1)])
    events: list[str] = []

    async def read_lines(response: httpx.Response) -> None:
        async for line in response.aiter_lines():
            events.extend([line] if line else [])

    async with httpx.AsyncClient() as http:
        body = {"model": "m", "messages": MESSAGES, "stream": True}
        async with http.stream("POST", f"{server.base_url}/chat/completions", json=body) as resp:
            with pytest.raises(httpx.RemoteProtocolError):
                await read_lines(resp)
    assert len(events) == 2
    assert "[DONE]" not in events[-1]


async def test_drop_non_streaming_is_a_connection_error(server: ChaosServer) -> None:
    server.set_script([Fault.drop_after(0)])
    async with client_for(server) as client:
        with pytest.raises(openai.APIConnectionError):
            await client.chat.completions.create(model="m", messages=MESSAGES)


async def test_stall_after_sends_nothing_for_the_stall(server: ChaosServer) -> None:
    server.set_script([Fault.stall_after(2, seconds=0.3)])
    async with client_for(server) as client:
        stream = await open_stream(client)
        arrivals: list[tuple[float, str]] = []
        async with asyncio.timeout(2):
            async for chunk in stream:
                arrivals += [(time.monotonic(), t) for t in content_of([chunk])]
    assert [token for _, token in arrivals] == TOKENS
    gap = arrivals[2][0] - arrivals[1][0]
    assert 0.28 <= gap < 1.0


async def test_stall_hits_the_client_read_timeout(server: ChaosServer) -> None:
    server.set_script([Fault.stall_after(1, seconds=0.5)])
    async with client_for(server, timeout=0.15) as client:
        stream = await open_stream(client)
        received: list[str] = []
        with pytest.raises(openai.APITimeoutError):
            await drain(stream, received)
    assert received == TOKENS[:1]


async def test_stall_ends_when_the_client_disconnects(server: ChaosServer) -> None:
    server.set_script([Fault.stall_after(1, seconds=30)])
    async with client_for(server) as client:
        stream = await open_stream(client)
        iterator = stream.__aiter__()
        await anext(iterator)
        await anext(iterator)
        assert server.in_flight == 1
        await stream.close()
    async with asyncio.timeout(0.5):
        while server.in_flight:
            await asyncio.sleep(0.01)


async def test_request_log_records_when_and_how_each_response_ended(server: ChaosServer) -> None:
    server.set_script([Fault.ok(), Fault.stall_after(1, seconds=30)])
    async with client_for(server) as client:
        received: list[str] = []
        await drain(await open_stream(client), received)
        stream = await open_stream(client)
        iterator = stream.__aiter__()
        await anext(iterator)
        await anext(iterator)
        assert server.requests[1].ended is None
        closed_at = time.monotonic()
        await stream.close()
    async with asyncio.timeout(5):
        while any(r.ended is None for r in server.requests):
            await asyncio.sleep(0.01)
    whole, cut = server.requests
    assert whole.ended is not None
    assert not whole.disconnected
    assert whole.ended >= whole.time
    assert cut.disconnected
    assert cut.ended is not None
    assert cut.ended >= closed_at
    assert server.peak_in_flight == 1


async def test_peak_in_flight_counts_concurrent_responses(server: ChaosServer) -> None:
    server.set_script([Fault.ok(delay=0.2)] * 3)
    async with client_for(server) as client:

        async def one() -> None:
            await drain(await open_stream(client), [])

        await asyncio.gather(one(), one(), one())
    assert server.peak_in_flight == 3
    server.reset()
    assert server.peak_in_flight == 0


async def test_slow_first_token_sends_headers_at_once(server: ChaosServer) -> None:
    server.set_script([Fault.slow_first_token(0.3)])
    async with client_for(server) as client:
        started = time.monotonic()
        stream = await open_stream(client)
        headers_at = time.monotonic()
        first = await anext(stream.__aiter__())
        first_at = time.monotonic()
        await stream.close()
    assert headers_at - started < 0.2
    assert first_at - started >= 0.28
    assert first.choices[0].delta.role == "assistant"


async def test_slow_headers_delays_the_response(server: ChaosServer) -> None:
    server.set_script([Fault.slow_headers(0.3)])
    async with client_for(server) as client:
        started = time.monotonic()
        stream = await open_stream(client)
        headers_at = time.monotonic()
        assert content_of(await collect(stream)) == TOKENS
    assert headers_at - started >= 0.28
    assert server.requests[0].time - started < 0.2


async def test_zero_output(server: ChaosServer) -> None:
    server.set_script([Fault.zero_output()])
    async with client_for(server) as client:
        stream = await open_stream(client, stream_options={"include_usage": True})
        chunks = await collect(stream)
    assert content_of(chunks) == []
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 0


async def test_malformed_sse_breaks_sdk_parsing(server: ChaosServer) -> None:
    server.set_script([Fault.malformed_sse(after=2), Fault.malformed_sse()])
    received: list[str] = []
    async with client_for(server) as client:
        stream = await open_stream(client)
        with pytest.raises(json.JSONDecodeError):
            await drain(stream, received)
        with pytest.raises(json.JSONDecodeError):
            await client.chat.completions.create(model="m", messages=MESSAGES)
    assert received == TOKENS[:2]


async def test_malformed_sse_on_the_wire(server: ChaosServer) -> None:
    server.set_script([Fault.malformed_sse(after=1)])
    _, events = await raw_events(server, {"model": "m", "messages": MESSAGES, "stream": True})
    assert events[2] == "data: {not json"
    assert events[-1] == "data: [DONE]"
    assert len(events) == 1 + len(TOKENS) + 1 + 1 + 1


# Tool calls.

CALLS: list[tuple[str, dict[str, Any]]] = [
    ("get_weather", {"city": "Paris", "unit": "celsius"}),
    ("get_time", {"zone": "Europe/Paris"}),
]


async def test_tool_call_stream(server: ChaosServer) -> None:
    server.set_script([Fault.tool_calls(CALLS, split=4)])
    async with client_for(server) as client:
        chunks = await collect(await open_stream(client))
    assert content_of(chunks) == []
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    deltas = [d for c in chunks for d in c.choices[0].delta.tool_calls or []]
    for index, (name, arguments) in enumerate(CALLS):
        mine = [d for d in deltas if d.index == index]
        head, fragments = mine[0], mine[1:]
        assert head.id == f"call_{index}"
        assert head.type == "function"
        assert head.function is not None
        assert (head.function.name, head.function.arguments) == (name, "")
        assert len(fragments) == 4
        assert all(f.id is None and f.function is not None for f in fragments)
        joined = "".join(f.function.arguments or "" for f in fragments if f.function)
        assert json.loads(joined) == arguments


async def test_tool_calls_non_streaming(server: ChaosServer) -> None:
    server.set_script([Fault.tool_calls(CALLS[:1])])
    async with client_for(server) as client:
        completion = await client.chat.completions.create(model="m", messages=MESSAGES)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.id == "call_0"
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == CALLS[0][1]


# Refusals.


async def test_refusal_streams_refusal_deltas_and_no_content(server: ChaosServer) -> None:
    server.set_script([Fault.refusal(), Fault.refusal(tokens=["No", " way."])])
    async with client_for(server) as client:
        chunks = await collect(await open_stream(client))
        custom = await collect(await open_stream(client))
    assert content_of(chunks) == []
    first = chunks[0].choices[0].delta
    assert (first.role, first.content, first.refusal) == ("assistant", None, "")
    refusal = "".join(c.choices[0].delta.refusal or "" for c in chunks if c.choices)
    assert refusal == DEFAULT_REFUSAL
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert [c.choices[0].delta.refusal for c in custom[1:-1]] == ["No", " way."]


async def test_refusal_on_the_wire_and_non_streaming(server: ChaosServer) -> None:
    server.set_script([Fault.refusal("Sorry."), Fault.refusal("Sorry, no.")])
    _, events = await raw_events(server, {"model": "m", "messages": MESSAGES, "stream": True})
    first = json.loads(events[0].removeprefix("data: "))["choices"][0]["delta"]
    assert first == {"role": "assistant", "content": None, "refusal": ""}
    second = json.loads(events[1].removeprefix("data: "))["choices"][0]["delta"]
    assert second == {"refusal": "Sorry."}
    assert events[-1] == "data: [DONE]"
    async with client_for(server) as client:
        completion = await client.chat.completions.create(model="m", messages=MESSAGES)
    message = completion.choices[0].message
    assert (message.content, message.refusal) == (None, "Sorry, no.")
    assert completion.choices[0].finish_reason == "stop"


# Non-streaming answers.


async def test_non_streaming_completion(server: ChaosServer) -> None:
    server.set_script([Fault.ok(), Fault.zero_output(), Fault.slow_first_token(0.2)])
    async with client_for(server) as client:
        completion = await client.chat.completions.create(model="chaos-2", messages=MESSAGES)
        empty = await client.chat.completions.create(model="chaos-2", messages=MESSAGES)
        started = time.monotonic()
        slow = await client.chat.completions.create(model="chaos-2", messages=MESSAGES)
        elapsed = time.monotonic() - started
    assert completion.object == "chat.completion"
    assert completion.model == "chaos-2"
    assert completion.choices[0].message.content == "".join(TOKENS)
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == len(TOKENS)
    assert empty.choices[0].message.content == ""
    assert slow.choices[0].message.content == "".join(TOKENS)
    assert elapsed >= 0.18
    assert [r.stream for r in server.requests] == [False, False, False]


# Recording, scripts per model, models list.


async def test_requests_are_recorded_before_the_fault(server: ChaosServer) -> None:
    server.set_script([Fault.status(500)])
    before = time.monotonic()
    async with client_for(server) as client:
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(model="a", messages=MESSAGES, temperature=0.5)
        await collect(await open_stream(client, model="b"))
    after = time.monotonic()
    first, second = server.requests
    assert isinstance(first, RecordedRequest)
    assert (first.index, first.model, first.stream) == (0, "a", False)
    assert first.messages == MESSAGES
    assert first.body["temperature"] == 0.5
    assert first.fault == Fault.status(500)
    assert first.headers["authorization"] == "Bearer test"
    assert (second.index, second.model, second.stream) == (1, "b", True)
    assert second.body["stream"] is True
    assert before <= first.time <= second.time <= after


async def test_model_scripts_count_per_model() -> None:
    model_scripts = {"flaky": [Fault.status(503), Fault.ok(text="flaky ok")]}
    server = ChaosServer([Fault.status(429)], text="main", model_scripts=model_scripts)
    async with server, client_for(server) as client:
        with pytest.raises(openai.InternalServerError):
            await open_stream(client, model="flaky")
        with pytest.raises(openai.RateLimitError):
            await open_stream(client, model="steady")
        flaky = await collect(await open_stream(client, model="flaky"))
        steady = await collect(await open_stream(client, model="steady"))
        server.set_script([Fault.status(401)], model="steady")
        with pytest.raises(openai.AuthenticationError):
            await open_stream(client, model="steady")
        models = await client.models.list()
    assert content_of(flaky) == ["flaky", " ok"]
    assert content_of(steady) == ["main"]
    assert [model.id for model in models.data] == ["flaky", "steady"]
    assert [r.model for r in server.requests] == ["flaky", "steady", "flaky", "steady", "steady"]


async def test_set_script_and_reset(server: ChaosServer) -> None:
    async with client_for(server) as client:
        server.set_script([Fault.status(500)])
        with pytest.raises(openai.InternalServerError):
            await open_stream(client)
        server.set_script([Fault.status(503)])
        with pytest.raises(openai.InternalServerError) as caught:
            await open_stream(client)
        assert caught.value.status_code == 503
        assert len(server.requests) == 2
        server.reset()
        assert server.requests == []
        with pytest.raises(openai.InternalServerError):
            await open_stream(client)
        assert server.requests[0].index == 0
        assert (await client.models.list()).data[0].id == "chaos-1"


async def test_bad_request_bodies_get_a_400(server: ChaosServer) -> None:
    async with httpx.AsyncClient() as http:
        url = f"{server.base_url}/chat/completions"
        not_json = await http.post(url, content=b"{oops")
        not_object = await http.post(url, json=[1, 2])
    assert not_json.status_code == not_object.status_code == 400
    assert not_json.json()["error"]["type"] == "invalid_request_error"
    assert server.requests == []


# Lifecycle.


def chaos_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "l0-chaos-server"]


async def test_stop_is_prompt_with_a_stalled_stream_in_flight() -> None:
    server = ChaosServer([Fault.stall_after(1, seconds=30)], tokens=TOKENS)
    await server.start()
    client = client_for(server)
    stream = await open_stream(client)
    iterator = stream.__aiter__()
    await anext(iterator)
    await anext(iterator)
    assert server.in_flight == 1
    started = time.monotonic()
    await server.stop()
    assert time.monotonic() - started < 1.0
    with pytest.raises(openai.APIConnectionError):
        await anext(iterator)
    await client.close()
    current = asyncio.current_task()
    assert [t for t in asyncio.all_tasks() if t is not current and not t.done()] == []
    assert chaos_threads() == []
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.base_url


async def test_stop_is_prompt_during_slow_headers() -> None:
    server = ChaosServer([Fault.slow_headers(30)])
    await server.start()
    async with client_for(server) as client:
        request = asyncio.create_task(open_stream(client))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await server.stop()
        assert time.monotonic() - started < 1.0
        with pytest.raises(openai.APIError):
            await request


async def test_lifecycle_errors_and_restart() -> None:
    server = ChaosServer()
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.base_url
    await server.stop()
    async with server:
        assert server.base_url.startswith("http://127.0.0.1:")
        assert server.base_url.endswith("/v1")
        with pytest.raises(RuntimeError, match="already running"):
            await server.start()
    async with server, httpx.AsyncClient() as http:
        assert (await http.get(f"{server.base_url}/models")).json()["object"] == "list"
    assert chaos_threads() == []


def test_sync_context_manager_with_a_sync_client() -> None:
    with ChaosServer([Fault.status(429)], text="sync works") as server:
        body = {"model": "m", "messages": MESSAGES}
        with httpx.Client(base_url=server.base_url) as http:
            assert http.post("/chat/completions", json=body).status_code == 429
            answer = http.post("/chat/completions", json=body).json()
    assert answer["choices"][0]["message"]["content"] == "sync works"
    assert chaos_threads() == []


async def test_concurrent_streams_each_get_their_fault(server: ChaosServer) -> None:
    server.set_script([Fault.stall_after(1, seconds=0.3), Fault.ok(text="fast")])
    async with client_for(server) as client:
        slow = await open_stream(client)
        fast = await open_stream(client)
        async with asyncio.timeout(2):
            slow_chunks, fast_chunks = await asyncio.gather(collect(slow), collect(fast))
    assert content_of(slow_chunks) == TOKENS
    assert content_of(fast_chunks) == ["fast"]


def test_fault_validation() -> None:
    with pytest.raises(ValueError, match="400 to 599"):
        Fault.status(200)
    with pytest.raises(TypeError, match="not a string"):
        Fault.ok(tokens="abc")
    with pytest.raises(ValueError, match="not both"):
        Fault.ok(text="a", tokens=["a"])
    with pytest.raises(ValueError, match=">= 0"):
        Fault.drop_after(-1)
    with pytest.raises(ValueError, match="seconds"):
        Fault.stall_after(1, seconds=-1)
    with pytest.raises(ValueError, match="split"):
        Fault.tool_calls([("f", {})], split=0)
    with pytest.raises(ValueError, match="sends no text"):
        Fault("zero_output", text="x")
    with pytest.raises(TypeError, match="expected a Fault"):
        ChaosServer(["ok"])  # type: ignore[list-item]
    assert Fault.ok(tokens=["a"]) == Fault.ok(tokens=("a",))
    assert hash(Fault.tool_calls([("f", {"x": 1})])) == hash(Fault.tool_calls([("f", {"x": 1})]))


# The pytest fixture shipped through the pytest11 entry point.


async def test_chaos_server_fixture(chaos_server: ChaosServer) -> None:
    assert chaos_server.requests == []
    chaos_server.set_script([Fault.status(429, headers={"Retry-After": "1"}), Fault.ok()])
    async with client_for(chaos_server) as client:
        with pytest.raises(openai.RateLimitError):
            await open_stream(client)
        chunks = await collect(await open_stream(client))
    assert "".join(content_of(chunks)) == DEFAULT_TEXT


def test_plugin_imports_without_the_testing_extra() -> None:
    # pytest loads the plugin in every run wherever L0 is installed, extra or not.
    code = (
        "import sys\n"
        "sys.modules['starlette'] = sys.modules['uvicorn'] = None\n"
        "import l0.testing.pytest_plugin\n"
        "try:\n"
        "    from l0.testing import ChaosServer\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "pip install 'l0[testing]'" in done.stdout


@pytest.mark.parametrize("port", [-1, 65536, "80", True, 1.5])
def test_bad_port(port: object) -> None:
    with pytest.raises(ValueError, match=r"port=.*expected an int from 0 to 65535"):
        ChaosServer(port=port)  # type: ignore[arg-type]


def test_fixed_port() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    with ChaosServer(port=free) as server:
        assert server.port == free


@pytest.mark.parametrize("keep_alive", [0, -1, 1.5, "5", True])
def test_bad_keep_alive(keep_alive: object) -> None:
    with pytest.raises(ValueError, match=r"keep_alive=.*expected an int number of seconds >= 1"):
        ChaosServer(keep_alive=keep_alive)  # type: ignore[arg-type]


def _idle_connection_closes(keep_alive: int, wait: float) -> bool:
    """Whether the server closes an idle keep-alive connection within ``wait`` seconds."""
    import socket

    with (
        ChaosServer(keep_alive=keep_alive) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn,
    ):
        conn.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
        response = b""
        while not response.endswith(b"}"):  # the small JSON body, whole
            response += conn.recv(65536)
        conn.settimeout(wait)
        try:
            return conn.recv(1) == b""
        except TimeoutError:
            return False


def test_keep_alive_sets_how_long_an_idle_connection_stays_open() -> None:
    assert _idle_connection_closes(keep_alive=1, wait=30)
    assert not _idle_connection_closes(keep_alive=120, wait=2)
