"""``result.raw()`` of the native transport: the SDK's own chunk objects, rebuilt from less.

The native transport keeps text-only chunks as their text against a template chunk, and every
other chunk as its bytes; whatever the stream, the rebuilt objects must equal (``model_dump``)
those the SDK's iterator builds from the same body, in order.
"""

from __future__ import annotations

import json
from typing import Any

import openai
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from l0_openai import OpenAIAdapter
from l0_openai.raw import RawChunks

import l0
from l0.testing import ChaosServer, Fault

MESSAGES: Any = [{"role": "user", "content": "Say it."}]
ADAPTERS = {name: OpenAIAdapter(transport=name) for name in ("native", "sdk")}


def encode(payload: dict[str, Any], style: str) -> bytes:
    """One event's JSON as different servers write it."""
    if style == "compact":
        return orjson.dumps(payload)
    if style == "spaced":
        return json.dumps(payload, ensure_ascii=False).encode()
    return json.dumps(payload).encode()  # non-ASCII characters as \\u escapes


def envelope(choices: list[Any], *, variant: int = 0, **extra: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": f"chatcmpl-{variant % 2}",
        "object": "chat.completion.chunk",
        "created": 1700000000 + variant // 2,
        "model": "m" if variant < 2 else "gpt-x",
    }
    if variant % 3 == 1:
        payload["system_fingerprint"] = "fp_1"
    payload["choices"] = choices
    payload.update(extra)
    return payload


def choice(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish, **extra}


LOGPROBS = {
    "content": [{"token": "x", "logprob": -0.5, "bytes": [120], "top_logprobs": []}],
    "refusal": None,
}
USAGE = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}

_text = st.lists(
    st.sampled_from(["a", " ", "é", '"', "\\", "\n", "世", "\U0001f600", "m", "content", "}"]),
    max_size=6,
).map("".join)
_event = st.one_of(
    st.tuples(st.just("text"), _text, st.integers(0, 5)),
    st.tuples(st.just("logprobs"), _text, st.integers(0, 5)),
    st.tuples(st.just("tool"), st.sampled_from(['{"a', '": 1', "}"]), st.integers(0, 5)),
    st.tuples(st.just("refusal"), _text, st.integers(0, 5)),
    st.tuples(st.just("role"), st.just(""), st.integers(0, 5)),
)


def body_of(events: list[tuple[str, str, int]], style: str, usage: bool) -> bytes:
    payloads: list[dict[str, Any]] = []
    for kind, text, variant in events:
        if kind == "text":
            payloads.append(envelope([choice({"content": text})], variant=variant))
        elif kind == "logprobs":
            item = choice({"content": text}, logprobs=None)
            item["logprobs"] = LOGPROBS
            payloads.append(envelope([item], variant=variant))
        elif kind == "tool":
            call = {"index": 0, "function": {"arguments": text}}
            payloads.append(envelope([choice({"tool_calls": [call]})], variant=variant))
        elif kind == "refusal":
            payloads.append(envelope([choice({"refusal": text})], variant=variant))
        else:
            delta = {"role": "assistant", "content": "", "refusal": None}
            payloads.append(envelope([choice(delta)], variant=variant))
    payloads.append(envelope([choice({}, "stop")]))
    if usage:
        payloads.append(envelope([], usage=USAGE))
    return b"".join(b"data: " + encode(p, style) + b"\n\n" for p in payloads) + (
        b"data: [DONE]\n\n"
    )


async def raw_of(server: ChaosServer, client: openai.AsyncOpenAI, body: bytes) -> dict[str, Any]:
    """Each transport's chunk objects (``model_dump``) and the error it ended with, if any."""
    seen: dict[str, Any] = {}
    for name, adapter in ADAPTERS.items():
        server.set_script([Fault.raw_sse([body])])
        stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        iterator = adapter.wrap(stream)
        error = None
        try:
            async for _ in iterator:
                pass
        except Exception as exc:  # compared across transports below
            error = type(exc).__name__
        seen[name] = ([c.model_dump() for c in iterator.raw_chunks], error)
    return seen


_TOOL_PREFIX = [("tool", "", 0)]


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    events=st.lists(_event, min_size=1, max_size=12),
    style=st.sampled_from(["compact", "spaced", "ascii"]),
    usage=st.booleans(),
)
async def test_raw_equals_the_sdks_objects_for_varied_streams(
    events: list[tuple[str, str, int]], style: str, usage: bool
) -> None:
    body = body_of([("role", "", 0), *events], style, usage)
    async with ChaosServer() as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="t", max_retries=0)
        seen = await raw_of(server, client, body)
        await client.close()
    assert seen["native"] == seen["sdk"]
    if seen["native"][1] is None:  # tool-call fragments may fail the stream; both alike
        assert len(seen["native"][0]) == len(events) + 2 + usage


CASES = {
    "text only": [("text", w, 0) for w in ("One", " two", ' "three"', "\n", " é世😀", "")],
    "ids and fingerprints change": [("text", "a", v) for v in (0, 1, 2, 3, 4, 5, 0)],
    "tool calls between text": [("text", "x", 0), ("tool", '{"a', 0), ("tool", '": 1}', 0)],
    "logprobs": [("text", "x", 0), ("logprobs", "y", 0), ("text", "z", 0)],
    "refusal": [("refusal", "I can", 0), ("refusal", "not.", 0)],
    "content like the model name": [("text", "m", 2), ("text", "m", 0), ("text", "gpt-x", 2)],
}


@pytest.mark.parametrize("case", list(CASES))
async def test_raw_equals_the_sdks_objects(case: str) -> None:
    async with ChaosServer() as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="t", max_retries=0)
        for style in ("compact", "spaced", "ascii"):
            body = body_of([("role", "", 0), *CASES[case]], style, usage=True)
            seen = await raw_of(server, client, body)
            assert seen["native"] == seen["sdk"], style
        await client.close()


async def test_text_chunks_keep_no_bytes_but_one_template() -> None:
    async with ChaosServer(text=" ".join(["word"] * 60)) as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="t", max_retries=0)
        result = l0.run(
            lambda: client.chat.completions.create(
                model="m",
                messages=MESSAGES,
                stream=True,
                stream_options={"include_usage": True},
            ),
            adapter=ADAPTERS["native"],
        )
        text = await result.read()
        raw = result._session._raw_list
        assert isinstance(raw, RawChunks)
        chunks = result.raw()
        assert len(chunks) == len(raw) == 1 + 60 + 1 + 1  # role, text, finish, usage
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
        body = sum(len(c.model_dump_json()) for c in chunks)
        # The role, finish and usage chunks and one template: a few chunks' worth, not 60.
        assert raw.kept_bytes < 6 * body / len(chunks)
        await client.close()


def test_a_chunk_that_differs_from_the_template_is_kept_whole_or_starts_another() -> None:
    raw = RawChunks(stream=None)
    base = envelope([choice({"content": "a"})])
    for text in ("a", "b", "c"):
        payload = envelope([choice({"content": text})])
        raw.add_text(orjson.dumps(payload), payload, text)
    assert raw.kept_bytes == len(orjson.dumps(base)) - 1  # one template, content cut out
    other = envelope([choice({"content": "d"})], variant=1)
    raw.add_text(orjson.dumps(other), other, "d")  # another id: a second template
    assert raw._templates == 2
    for i in range(20):  # a field that changes in every chunk: templates are capped
        payload = envelope([choice({"content": "e"})], variant=1, obfuscation=str(i))
        raw.add_text(orjson.dumps(payload), payload, "e")
    assert raw._templates == 8
    assert len(raw) == 24
    assert sum(type(e) is bytes for e in raw._entries) == 20 - 6
