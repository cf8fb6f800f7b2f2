"""Responses API streams and in-stream errors, through the real ``openai`` SDK.

The chaos server serves chat completions only, so these tests give the real ``AsyncOpenAI``
client an HTTP transport (``httpx2.MockTransport``) that answers with scripted server-sent
events. Everything above the transport is the SDK's own code: request building, SSE decoding,
event models, exceptions.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import httpx2
import openai
import pytest
from l0_openai import categorize_openai_error
from openai.types.responses import ResponseCompletedEvent, ResponseTextDeltaEvent

import l0
from l0.errors import RefusalError, ToolCallError

FAST = l0.Retry(base_delay=0.0, max_delay=0.0)

Reply = Sequence[dict[str, Any]] | tuple[int, dict[str, Any]]


class ScriptedTransport:
    """Answers request ``i`` with ``replies[i]``: a list of SSE payloads or ``(status, body)``."""

    def __init__(self, replies: Sequence[Reply]) -> None:
        self.replies = list(replies)
        self.requests: list[httpx2.Request] = []

    def handler(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        reply = self.replies[len(self.requests) - 1]
        if isinstance(reply, tuple):
            status, body = reply
            return httpx2.Response(status, json=body)
        frames = []
        for payload in reply:
            event = payload.get("type")
            head = f"event: {event}\n" if isinstance(event, str) else ""
            frames.append(f"{head}data: {json.dumps(payload)}\n\n")
        if not any(isinstance(p.get("type"), str) for p in reply):
            frames.append("data: [DONE]\n\n")  # chat completions streams end with [DONE]
        body = "".join(frames).encode()
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    def client(self) -> openai.AsyncOpenAI:
        http = httpx2.AsyncClient(transport=httpx2.MockTransport(self.handler))
        return openai.AsyncOpenAI(
            base_url="http://scripted.test/v1", api_key="test", max_retries=0, http_client=http
        )


def response(status: str = "in_progress", **fields: Any) -> dict[str, Any]:
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 0,
        "model": "gpt-test",
        "output": [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "status": status,
        **fields,
    }


USAGE = {
    "input_tokens": 5,
    "input_tokens_details": {"cached_tokens": 0},
    "output_tokens": 4,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 9,
}


def text_events(words: Sequence[str]) -> list[dict[str, Any]]:
    deltas = [
        {
            "type": "response.output_text.delta",
            "item_id": "msg_1",
            "output_index": 0,
            "content_index": 0,
            "delta": word,
            "logprobs": [],
        }
        for word in words
    ]
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": response()},
        *deltas,
        {"type": "response.completed", "response": response("completed", usage=USAGE)},
    ]
    return [{**e, "sequence_number": n} for n, e in enumerate(events)]


def function_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": f"fc_{call_id}",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": "completed",
    }


def failed(code: str) -> list[dict[str, Any]]:
    error = {"code": code, "message": f"the response failed: {code}"}
    return [
        {"type": "response.created", "sequence_number": 0, "response": response()},
        {
            "type": "response.output_text.delta",
            "sequence_number": 1,
            "item_id": "msg_1",
            "output_index": 0,
            "content_index": 0,
            "delta": "Partial",
            "logprobs": [],
        },
        {
            "type": "response.failed",
            "sequence_number": 2,
            "response": response("failed", error=error),
        },
    ]


def responses_factory(client: openai.AsyncOpenAI) -> Callable[[], Any]:
    return lambda: client.responses.create(model="gpt-test", input="Say hi.", stream=True)


async def test_responses_text_usage_and_raw_events() -> None:
    words = ["Hello", ",", " world", "!"]
    transport = ScriptedTransport([text_events(words)])
    client = transport.client()
    result = l0.run(responses_factory(client), retry=FAST)
    tokens = [event.text async for event in result if event.is_token]
    assert tokens == words
    assert result.state.content == "Hello, world!"
    assert result.state.finish_reason == "stop"
    assert result.state.usage is not None
    assert result.state.usage["total_tokens"] == 9
    raw = result.raw()
    assert len(raw) == 6
    assert isinstance(raw[1], ResponseTextDeltaEvent)
    assert isinstance(raw[-1], ResponseCompletedEvent)
    await client.close()


async def test_responses_function_calls_fire_once_with_whole_arguments() -> None:
    first = function_call("call_a", "get_weather", '{"city": "Paris"}')
    second = function_call("call_b", "lookup", '{"ids": [1, 2]}')
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": response()},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {**first, "arguments": ""},
        },
        {
            "type": "response.function_call_arguments.delta",
            "item_id": "fc_call_a",
            "output_index": 0,
            "delta": '{"city": ',
        },
        {
            "type": "response.function_call_arguments.delta",
            "item_id": "fc_call_a",
            "output_index": 0,
            "delta": '"Paris"}',
        },
        {
            "type": "response.function_call_arguments.done",
            "item_id": "fc_call_a",
            "output_index": 0,
            "arguments": '{"city": "Paris"}',
        },
        {"type": "response.output_item.done", "output_index": 0, "item": first},
        # The second call only shows up in the final response (a terse server).
        {
            "type": "response.completed",
            "response": response("completed", output=[first, second], usage=USAGE),
        },
    ]
    transport = ScriptedTransport([[{**e, "sequence_number": n} for n, e in enumerate(events)]])
    client = transport.client()
    seen: list[tuple[str, str, dict[str, Any]]] = []
    result = l0.run(
        responses_factory(client),
        retry=FAST,
        on_tool_call=lambda name, call_id, args: seen.append((name, call_id, args)),
    )
    assert await result.read() == ""
    await result.wait_callbacks()
    assert seen == [
        ("get_weather", "call_a", {"city": "Paris"}),
        ("lookup", "call_b", {"ids": [1, 2]}),
    ]
    assert result.state.finish_reason == "tool_calls"
    assert len(transport.requests) == 1  # tool calls alone are output, not zero output
    await client.close()


async def test_responses_broken_function_arguments_name_the_tool() -> None:
    broken = function_call("call_x", "get_weather", '{"city": "Par')
    events = [
        {"type": "response.created", "sequence_number": 0, "response": response()},
        {
            "type": "response.output_item.done",
            "sequence_number": 1,
            "output_index": 0,
            "item": broken,
        },
    ]
    transport = ScriptedTransport([events, text_events(["ok"])])
    client = transport.client()
    result = l0.run(responses_factory(client), retry=FAST)
    assert await result.read() == "ok"
    error = result.errors[0].error
    assert isinstance(error, ToolCallError)
    assert "get_weather" in str(error)
    assert result.errors[0].category is l0.ErrorCategory.MODEL
    await client.close()


async def test_responses_failed_with_server_error_is_retried() -> None:
    transport = ScriptedTransport([failed("server_error"), text_events(["Fine", "."])])
    client = transport.client()
    result = l0.run(responses_factory(client), retry=FAST)
    assert await result.read() == "Fine."
    error = result.errors[0].error
    assert isinstance(error, openai.APIError)
    assert error.code == "server_error"
    assert result.errors[0].category is l0.ErrorCategory.TRANSIENT
    assert len(transport.requests) == 2
    await client.close()


async def test_responses_failed_with_invalid_prompt_is_fatal() -> None:
    transport = ScriptedTransport([failed("invalid_prompt"), text_events(["never"])])
    client = transport.client()
    with pytest.raises(openai.APIError) as caught:
        await l0.run(responses_factory(client), retry=FAST).read()
    assert caught.value.code == "invalid_prompt"
    assert len(transport.requests) == 1
    await client.close()


async def test_responses_error_event_is_raised_and_retried() -> None:
    error_event = [
        {"type": "response.created", "sequence_number": 0, "response": response()},
        {
            "type": "error",
            "sequence_number": 1,
            "code": "rate_limit_exceeded",
            "message": "slow down",
        },
    ]
    transport = ScriptedTransport([error_event, text_events(["Done"])])
    client = transport.client()
    result = l0.run(responses_factory(client), retry=FAST)
    assert await result.read() == "Done"
    assert "slow down" in str(result.errors[0].error)
    await client.close()


async def test_responses_incomplete_max_output_tokens_is_length() -> None:
    events = text_events(["Cut"])
    events[-1] = {
        "type": "response.incomplete",
        "sequence_number": events[-1]["sequence_number"],
        "response": response(
            "incomplete", incomplete_details={"reason": "max_output_tokens"}, usage=USAGE
        ),
    }
    transport = ScriptedTransport([events, text_events(["Whole"])])
    client = transport.client()
    result = l0.run(responses_factory(client), retry=FAST)
    assert await result.read() == "Cut"
    assert result.state.finish_reason == "length"
    retried = l0.run(responses_factory(client), retry=FAST, retry_on_length=True)
    transport.replies.insert(1, events)  # request 2 is cut again, request 3 is whole
    assert await retried.read() == "Whole"
    assert len(transport.requests) == 3
    await client.close()


async def test_responses_stream_cut_before_completed_is_retried() -> None:
    cut = text_events(["Half"])[:-1]  # no response.completed: the connection closed cleanly
    transport = ScriptedTransport([cut, text_events(["Whole"])])
    client = transport.client()
    result = l0.run(responses_factory(client), retry=FAST)
    assert await result.read() == "Whole"
    assert type(result.errors[0].error).__name__ == "IncompleteStreamError"
    assert result.errors[0].category is l0.ErrorCategory.NETWORK
    await client.close()


async def test_wrapped_client_responses_create_retries() -> None:
    transport = ScriptedTransport([failed("server_error"), text_events(["Again", "!"])])
    raw = transport.client()
    client = l0.wrap(raw, retry=FAST)
    result = client.responses.create(model="gpt-test", input="Say hi.", stream=True)
    assert isinstance(result, l0.Result)
    assert await result.read() == "Again!"
    assert len(transport.requests) == 2
    assert all(r.url.path == "/v1/responses" for r in transport.requests)
    await raw.close()


def chat_chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "gpt-test",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def chat_factory(client: openai.AsyncOpenAI) -> Callable[[], Any]:
    return lambda: client.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "hi"}], stream=True
    )


async def test_chat_error_inside_the_stream_is_transient() -> None:
    midstream = [
        chat_chunk({"role": "assistant", "content": ""}),
        chat_chunk({"content": "Part"}),
        {"error": {"message": "The server had an error", "type": "server_error", "code": None}},
    ]
    whole = [chat_chunk({"content": "Whole"}), chat_chunk({}, "stop")]
    transport = ScriptedTransport([midstream, whole])
    client = transport.client()
    result = l0.run(chat_factory(client), retry=FAST)
    assert await result.read() == "Whole"
    error = result.errors[0].error
    assert type(error) is openai.APIError
    assert result.errors[0].category is l0.ErrorCategory.TRANSIENT
    await client.close()


async def test_chat_stream_without_finish_reason_is_retried() -> None:
    cut = [chat_chunk({"content": "Half"})]
    whole = [chat_chunk({"content": "Whole"}), chat_chunk({}, "stop")]
    transport = ScriptedTransport([cut, whole])
    client = transport.client()
    result = l0.run(chat_factory(client), retry=FAST)
    assert await result.read() == "Whole"
    assert result.errors[0].category is l0.ErrorCategory.NETWORK
    await client.close()


async def test_chat_tool_call_with_broken_arguments_names_the_tool() -> None:
    broken = [
        chat_chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": '{"q": '},
                    }
                ]
            }
        ),
        chat_chunk({}, "tool_calls"),
    ]
    transport = ScriptedTransport([broken, broken])
    client = transport.client()
    result = l0.run(chat_factory(client), retry=l0.Retry(attempts=1, base_delay=0, max_delay=0))
    with pytest.raises(l0.RetryExhaustedError) as caught:
        await result.read()
    error = caught.value.last_error
    assert isinstance(error, ToolCallError)
    assert "'lookup'" in str(error)
    assert "call_1" in str(error)
    assert len(transport.requests) == 2
    await client.close()


async def test_chat_tool_calls_sharing_index_zero_are_kept_apart() -> None:
    # Some OpenAI-compatible servers number every tool call 0; a new id starts a new call.
    def call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
        function = {"name": name, "arguments": arguments}
        return chat_chunk({"tool_calls": [{"index": 0, "id": call_id, "function": function}]})

    chunks = [
        call("a", "one", '{"x": 1}'),
        call("b", "two", '{"y": 2}'),
        chat_chunk({}, "tool_calls"),
    ]
    transport = ScriptedTransport([chunks])
    client = transport.client()
    result = l0.run(chat_factory(client), retry=FAST)
    await result.read()
    assert [(c["id"], c["name"], c["arguments"]) for c in result.state.tool_calls] == [
        ("a", "one", {"x": 1}),
        ("b", "two", {"y": 2}),
    ]
    await client.close()


def test_categories_of_sdk_exceptions() -> None:
    request = httpx2.Request("POST", "http://scripted.test/v1/chat/completions")

    def status_error(cls: type[openai.APIStatusError], status: int) -> openai.APIStatusError:
        return cls("boom", response=httpx2.Response(status, request=request), body=None)

    network, transient, fatal = (
        l0.ErrorCategory.NETWORK,
        l0.ErrorCategory.TRANSIENT,
        l0.ErrorCategory.FATAL,
    )
    cases: list[tuple[BaseException, l0.ErrorCategory | None]] = [
        (openai.APIConnectionError(request=request), network),
        (openai.APITimeoutError(request=request), network),
        (status_error(openai.RateLimitError, 429), transient),
        (status_error(openai.InternalServerError, 500), transient),
        (status_error(openai.InternalServerError, 529), transient),
        (status_error(openai.ConflictError, 409), transient),
        (status_error(openai.AuthenticationError, 401), fatal),
        (status_error(openai.PermissionDeniedError, 403), fatal),
        (status_error(openai.BadRequestError, 400), fatal),
        (status_error(openai.NotFoundError, 404), fatal),
        (status_error(openai.UnprocessableEntityError, 422), fatal),
        (openai.APIError("mid-stream", request, body={"code": "server_error"}), transient),
        (openai.APIError("mid-stream", request, body=None), transient),
        (openai.APIError("bad prompt", request, body={"code": "invalid_prompt"}), fatal),
        (ValueError("not ours"), None),
    ]
    for error, expected in cases:
        assert categorize_openai_error(error) is expected, error
        if expected is not None:
            assert l0.categorize_error(error) is expected, error


def refusal_events(pieces: Sequence[str], *, with_deltas: bool = True) -> list[dict[str, Any]]:
    """A refusal as OpenAI streams it: deltas, ``.done``, and the message in the response."""
    whole = "".join(pieces)
    where = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    message = {
        "type": "message",
        "id": "msg_1",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "refusal", "refusal": whole}],
    }
    streamed: list[dict[str, Any]] = []
    if with_deltas:
        streamed = [
            *({"type": "response.refusal.delta", **where, "delta": p} for p in pieces),
            {"type": "response.refusal.done", **where, "refusal": whole},
        ]
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": response()},
        *streamed,
        {"type": "response.output_item.done", "output_index": 0, "item": message},
        {
            "type": "response.completed",
            "response": response("completed", output=[message], usage=USAGE),
        },
    ]
    return [{**e, "sequence_number": n} for n, e in enumerate(events)]


async def test_responses_refusal_is_a_model_error_with_the_whole_text() -> None:
    refused = refusal_events(["I can't", " do that."])
    # The second refusal comes only inside the final response (no refusal events at all).
    quiet = refusal_events(["No."], with_deltas=False)
    transport = ScriptedTransport([refused, quiet, text_events(["Fine", "."])])
    client = transport.client()
    result = l0.run(responses_factory(client), retry=FAST)
    assert await result.read() == "Fine."
    errors = [attempt.error for attempt in result.errors]
    assert all(isinstance(error, RefusalError) for error in errors)
    assert [error.refusal for error in errors if isinstance(error, RefusalError)] == [
        "I can't do that.",
        "No.",
    ]
    assert {attempt.category for attempt in result.errors} == {l0.ErrorCategory.MODEL}
    assert len(transport.requests) == 3
    await client.close()
