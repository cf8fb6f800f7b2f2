"""The native transport of ``l0-openai`` over real HTTP: the same answers and errors as the SDK.

Each test runs the real ``openai`` SDK against ``l0.testing.ChaosServer`` and compares the
native transport (L0 parses the SSE bytes) with the SDK's own iterator (``transport="sdk"``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal

import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from l0_openai import OpenAIAdapter
from l0_openai.native import NativeStream, can_read_natively
from openai.types.chat import ChatCompletionChunk

import l0
from l0.errors import ConfigError, MalformedChunkError, RetryExhaustedError
from l0.testing import ChaosServer, Fault
from l0.tool_calls import ChunkStream

FAST = l0.Retry(base_delay=0.0, max_delay=0.0)
MESSAGES: Any = [{"role": "user", "content": "Say it."}]
TRANSPORTS = ["native", "sdk"]
ADAPTERS = {name: OpenAIAdapter(transport=name) for name in TRANSPORTS}


def client_for(server: ChaosServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)


def factory(client: openai.AsyncOpenAI, **extra: Any) -> Callable[[], Any]:
    return lambda: client.chat.completions.create(
        model="chaos-1", messages=MESSAGES, stream=True, **extra
    )


def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    payload = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return json.dumps(payload, ensure_ascii=False).encode()


async def read_errors(result: Any) -> tuple[str, list[str]]:
    """Iterate ``result``; return its text and the type names of the errors it recovered from."""
    errors = [type(event.error).__name__ async for event in result if event.error is not None]
    return result.state.content, errors


async def run_both(server: ChaosServer, **options: Any) -> dict[str, Any]:
    """Run the same script through each transport; return each one's result or error."""
    outcomes: dict[str, Any] = {}
    client = client_for(server)
    for name in TRANSPORTS:
        server.reset()
        result = l0.run(factory(client), adapter=ADAPTERS[name], **options)
        try:
            text = await result.read()
        except Exception as exc:  # compared below, type and content
            outcomes[name] = exc
        else:
            outcomes[name] = (text, result.state.finish_reason, result.raw())
    await client.close()
    return outcomes


async def test_native_transport_is_the_default_and_builds_sdk_chunks_only_for_raw() -> None:
    async with ChaosServer(text="One two three.") as server:
        client = client_for(server)
        result = l0.run(factory(client, stream_options={"include_usage": True}), retry=FAST)
        built: list[int] = []
        iterators = set()
        async for event in result:
            if event.is_token:
                iterators.add(type(result._session._iterator))
                built.append(len(result._session._iterator.raw_chunks._built))
        assert iterators == {NativeStream}
        assert built == [0, 0, 0]  # no SDK object built while streaming
        assert result.state.content == "One two three."
        raw = result.raw()
        assert all(isinstance(c, ChatCompletionChunk) for c in raw)
        assert len(raw) == 1 + 3 + 1 + 1  # role, content, finish, usage
        assert raw[-1].usage is not None
        assert raw[-1].usage.completion_tokens == 3
        assert result.raw()[0] is raw[0]  # built once
        await client.close()


async def test_raw_chunks_equal_the_sdk_transports() -> None:
    async with ChaosServer(text="Same chunks, same objects.") as server:
        outcomes = await run_both(server, retry=FAST)
    native, sdk = outcomes["native"], outcomes["sdk"]
    assert native[:2] == sdk[:2]
    # The server stamps ``created`` with the wall clock's second, which may tick between the
    # two runs; everything else must be equal.
    assert [c.model_dump(exclude={"created"}) for c in native[2]] == [
        c.model_dump(exclude={"created"}) for c in sdk[2]
    ]
    assert all(isinstance(c.created, int) for c in native[2])


async def test_tool_calls_and_usage_match_the_sdk() -> None:
    calls = [("get_weather", {"city": "Paris"}), ("get_time", {"tz": "CET"})]
    async with ChaosServer() as server:
        client = client_for(server)
        seen = {}
        for name in TRANSPORTS:
            server.set_script([Fault.tool_calls(calls, split=4)])
            result = l0.run(
                factory(client, stream_options={"include_usage": True}),
                adapter=ADAPTERS[name],
                retry=FAST,
            )
            await result.read()
            seen[name] = (result.state.tool_calls, result.state.usage, result.state.finish_reason)
        await client.close()
    assert seen["native"] == seen["sdk"]
    assert [c["arguments"] for c in seen["native"][0]] == [{"city": "Paris"}, {"tz": "CET"}]


@pytest.mark.parametrize("gap", [0.0, 0.002])
async def test_sse_edge_cases_over_http(gap: float) -> None:
    body = (
        b": keep-alive\r\n\r\n"
        b"data: " + chunk({"role": "assistant", "content": ""}) + b"\r\n\r\n"
        b"event: message\n"
        b"data: " + chunk({"content": "h\u00e9llo "}) + b"\n\n"
        b"data:\n\n"
        b"data: " + chunk({"content": "\u4e16\u754c \U0001f600"}) + b"\r\r"
        b"data: " + chunk({}, "stop") + b"\n\n"
        b"data: [DONE]"
    )
    # Cut inside the CRLF, inside the emoji, inside a "data:" prefix.
    cuts = [body.index(b"\r\n") + 1, body.index(b"\xf0") + 2, body.index(b"data:\n") + 3]
    points = sorted(cuts)
    pieces = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    async with ChaosServer() as server:
        client = client_for(server)
        server.set_script([Fault.raw_sse(pieces, gap=gap)])
        result = l0.run(factory(client), retry=FAST)
        assert await result.read() == "h\u00e9llo \u4e16\u754c \U0001f600"
        assert result.state.finish_reason == "stop"
        assert len(server.requests) == 1
        await client.close()


async def test_final_event_without_blank_line_still_counts() -> None:
    body = b"data: " + chunk({"content": "done"}) + b"\n\ndata: " + chunk({}, "stop")
    async with ChaosServer() as server:
        client = client_for(server)
        server.set_script([Fault.raw_sse([body])])
        result = l0.run(factory(client), retry=FAST)
        assert await result.read() == "done"
        assert result.state.finish_reason == "stop"
        await client.close()


async def test_truncated_final_event_is_an_incomplete_stream_and_is_retried() -> None:
    body = b"data: " + chunk({"content": "part"}) + b"\n\ndata: " + chunk({}, "stop")[:20]
    async with ChaosServer(text="whole answer") as server:
        client = client_for(server)
        server.set_script([Fault.raw_sse([body])])
        result = l0.run(factory(client), retry=FAST)
        assert await read_errors(result) == ("whole answer", ["IncompleteStreamError"])
        assert len(server.requests) == 2
        await client.close()


async def test_mid_stream_error_object_raises_what_the_sdk_raises() -> None:
    async with ChaosServer(text="a b c d") as server:
        server.set_script([Fault.stream_error(2, code="invalid_prompt", message="no")] * 2)
        outcomes = await run_both(server, retry=FAST)
    native, sdk = outcomes["native"], outcomes["sdk"]
    assert type(native) is type(sdk) is openai.APIError
    assert (native.message, native.code, native.body) == (sdk.message, sdk.code, sdk.body)
    assert native.body == {
        "message": "no",
        "type": "server_error",
        "param": None,
        "code": "invalid_prompt",
    }


async def test_transient_mid_stream_error_is_retried_and_text_is_exact() -> None:
    async with ChaosServer(text="exactly this text") as server:
        client = client_for(server)
        server.set_script([Fault.stream_error(2), Fault.malformed_sse(1)])
        result = l0.run(factory(client), retry=FAST)
        text, errors = await read_errors(result)
        assert (text, errors) == ("exactly this text", ["APIError", "MalformedChunkError"])
        assert len(server.requests) == 3
        await client.close()


async def test_malformed_chunk_is_the_same_error_type_on_both_transports() -> None:
    async with ChaosServer(text="x y") as server:
        server.set_script([Fault.malformed_sse(1)] * 2)
        outcomes = await run_both(server, retry=l0.Retry(max_retries=0, attempts=1))
    for outcome in outcomes.values():
        assert isinstance(outcome, RetryExhaustedError)
        assert isinstance(outcome.errors[-1].error, MalformedChunkError)


async def test_dropped_connection_is_the_sdks_connection_error() -> None:
    async with ChaosServer(text="a b c d") as server:
        server.set_script([Fault.drop_after(2)] * 2)
        outcomes = await run_both(server, retry=l0.Retry(max_retries=0, attempts=1))
    for outcome in outcomes.values():
        assert isinstance(outcome, RetryExhaustedError)
        assert type(outcome.errors[-1].error) is openai.APIConnectionError


async def test_wrap_transport_option_and_its_validation() -> None:
    async with ChaosServer(text="wrapped text") as server:
        client = client_for(server)
        choices: list[tuple[Literal["native", "sdk"], type]] = [
            ("sdk", ChunkStream),
            ("native", NativeStream),
        ]
        for name, kind in choices:
            wrapped = l0.wrap(client, transport=name)
            result = wrapped.chat.completions.create(model="m", messages=MESSAGES, stream=True)
            kinds = set()
            async for event in result:
                if event.is_token:
                    kinds.add(type(result._session._iterator))
            assert kinds == {kind}
            assert result.state.content == "wrapped text"
        with pytest.raises(TypeError, match="transport='fast': choose one of 'native', 'sdk'"):
            l0.wrap(client, transport="fast")  # type: ignore[call-overload]
        await client.close()


def test_transport_argument_and_configuration_are_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ConfigError, match="transport='http2': choose one of"):
        OpenAIAdapter(transport="http2")
    monkeypatch.setenv("L0_OPENAI_TRANSPORT", "fastest")
    with pytest.raises(ConfigError, match=r"L0_OPENAI_TRANSPORT.*'native' or 'sdk'"):
        _ = OpenAIAdapter().transport
    monkeypatch.setenv("L0_OPENAI_TRANSPORT", "sdk")
    assert OpenAIAdapter().transport == "sdk"
    assert OpenAIAdapter(transport="native").transport == "native"
    monkeypatch.delenv("L0_OPENAI_TRANSPORT")
    assert OpenAIAdapter().transport == "native"


async def test_configured_sdk_transport_applies_to_the_plugin_adapter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("L0_OPENAI_TRANSPORT", "sdk")
    async with ChaosServer(text="configured") as server:
        client = client_for(server)
        result = l0.run(factory(client), retry=FAST)
        kinds = {type(result._session._iterator) async for e in result if e.is_token}
        assert kinds == {ChunkStream}
        assert result.state.content == "configured"
        await client.close()


async def test_strict_validation_clients_keep_the_sdk_iterator() -> None:
    async with ChaosServer(text="strict") as server:
        client = openai.AsyncOpenAI(
            base_url=server.base_url,
            api_key="test",
            max_retries=0,
            _strict_response_validation=True,
        )
        result = l0.run(factory(client), retry=FAST)
        kinds = []
        async for _ in result:
            kinds.append(type(result._session._iterator))
            break
        assert kinds == [ChunkStream]
        await result.aclose()
        await client.close()


async def test_keep_raw_false_keeps_nothing() -> None:
    async with ChaosServer(text="no raw kept") as server:
        client = client_for(server)
        for transport in TRANSPORTS:
            adapter = OpenAIAdapter(keep_raw=False, transport=transport)
            result = l0.run(factory(client), adapter=adapter, retry=FAST)
            assert await result.read() == "no raw kept"
            assert result.raw() == []
        await client.close()


_GOOD = "alpha beta gamma"
_pieces = st.sampled_from(
    [
        b": ping\n\n",
        b"data: {not json\n\n",
        b"data: \xff\xfe\n\n",
        b"data: []\n\n",
        b"data: 42\n\n",
        b'data: {"choices": "x"}\n\n',
        b"event: x\n\n",
        b"\r\n",
        b"data: ",
    ]
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(noise=st.lists(_pieces, max_size=4), position=st.integers(0, 4), cut=st.integers(0, 400))
async def test_fuzzed_bodies_end_with_exact_text_or_a_typed_error(
    noise: list[bytes], position: int, cut: int
) -> None:
    # Good events with noise spliced in, the body cut into two writes anywhere, then a clean
    # answer: the result is the clean text exactly, or a typed L0 / SDK error; never a hang.
    events = [chunk({"content": w}) for w in ("alpha ", "beta ", "gamma")]
    body = b"".join(b"data: " + e + b"\n\n" for e in events)
    body += b"data: " + chunk({}, "stop") + b"\n\ndata: [DONE]\n\n"
    cut_at = b"".join(noise)
    parts = body.split(b"\n\n")
    index = min(position, len(parts))
    mixed = b"\n\n".join(parts[:index]) + (b"\n\n" if index else b"") + cut_at
    mixed += b"\n\n".join(parts[index:])
    split = min(cut, len(mixed) - 1)
    pieces = [p for p in (mixed[:split], mixed[split:]) if p]
    async with ChaosServer(text=_GOOD) as server:
        client = client_for(server)
        server.set_script([Fault.raw_sse(pieces, gap=0.001)])
        result = l0.run(factory(client), retry=FAST, timeout=l0.Timeout(initial_token=10))
        outcome: str | BaseException
        try:
            outcome = await result.read()
        except (l0.errors.L0Error, openai.OpenAIError) as exc:
            outcome = exc
        assert outcome == _GOOD or not isinstance(outcome, (str, l0.errors.InvalidStreamError))
        await client.close()


async def test_a_stream_someone_started_reading_keeps_the_sdk_iterator() -> None:
    async with ChaosServer(text="one two three") as server:
        client = client_for(server)
        fresh = await factory(client)()
        assert can_read_natively(fresh)
        started = await factory(client)()
        first = await started.__anext__()
        assert first.choices[0].delta.role == "assistant"
        assert not can_read_natively(started)
        await fresh.close()
        await started.close()
        await client.close()
