"""``l0.wrap(AsyncOpenAI(...))`` against the chaos server, and who owns retries."""

from __future__ import annotations

import logging
from typing import Any

import openai
import pytest
from l0_openai import L0AsyncOpenAI, OpenAIAdapter
from openai.types.chat import ChatCompletion

import l0
from l0.testing import ChaosServer, Fault

TEXT = "Wrapped clients retry on their own."
FAST = l0.Retry(base_delay=0.0, max_delay=0.0)
MESSAGES: Any = [{"role": "user", "content": "hi"}]


async def test_streaming_create_returns_a_result_that_retries() -> None:
    script = [Fault.status(429, headers={"Retry-After": "0"}), Fault.drop_after(2), Fault.ok()]
    async with ChaosServer(script=script, text=TEXT) as server:
        raw = openai.AsyncOpenAI(base_url=server.base_url, api_key="test")
        client = l0.wrap(raw, retry=FAST)
        assert isinstance(client, L0AsyncOpenAI)
        result = await client.chat.completions.create(
            model="chaos-1", messages=MESSAGES, stream=True
        )
        assert isinstance(result, l0.Result)
        assert await result.read() == TEXT
        assert len(server.requests) == 3
        await raw.close()


async def test_sdk_retries_are_off_for_streams_so_retries_never_multiply() -> None:
    # The client asks the SDK for 5 retries; L0 allows 1. If the SDK retried too, the server
    # would see up to 12 requests (and the fourth would succeed).
    script = [Fault.status(500)] * 3 + [Fault.ok()]
    async with ChaosServer(script=script, text=TEXT) as server:
        raw = openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=5)
        client = l0.wrap(raw, retry=l0.Retry(max_retries=1, base_delay=0, max_delay=0))
        result = client.chat.completions.create(model="chaos-1", messages=MESSAGES, stream=True)
        with pytest.raises(l0.RetryExhaustedError):
            await result.read()
        assert len(server.requests) == 2
        # Non-streaming calls keep the client's own retries: request 3 fails, 4 succeeds.
        answer = await client.chat.completions.create(model="chaos-1", messages=MESSAGES)
        assert isinstance(answer, ChatCompletion)
        assert answer.choices[0].message.content == TEXT
        assert len(server.requests) == 4
        await raw.close()


async def test_other_attributes_pass_through() -> None:
    async with ChaosServer(text=TEXT) as server:
        raw = openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        client = l0.wrap(raw, retry=FAST)
        assert client.embeddings is raw.embeddings
        assert client.models is raw.models
        assert client.beta is raw.beta
        assert client.api_key == "test"
        assert client.chat.completions.with_raw_response is not None
        await client.chat.completions.create(model="listed-model", messages=MESSAGES)
        models = await client.models.list()
        assert [m.id for m in models.data] == ["listed-model"]
        copy = client.with_options(timeout=5.0)
        assert isinstance(copy, L0AsyncOpenAI)
        assert copy.l0_options == client.l0_options
        assert copy.l0_client.timeout == 5.0
        assert copy.l0_streaming_client.max_retries == 0
        assert (
            await copy.chat.completions.create(
                model="chaos-1", messages=MESSAGES, stream=True
            ).read()
            == TEXT
        )
        await raw.close()


async def test_per_call_options_and_fallback_models() -> None:
    scripts = {"model-a": [Fault.status(503)] * 5, "model-b": [Fault.ok()]}
    async with ChaosServer(model_scripts=scripts, text=TEXT) as server:
        raw = openai.AsyncOpenAI(base_url=server.base_url, api_key="test")
        client = l0.wrap(raw, retry=l0.Retry(max_retries=2, base_delay=0, max_delay=0))
        result = client.chat.completions.create(
            model="model-a",
            messages=MESSAGES,
            stream=True,
            l0_options={
                "retry": l0.Retry(max_retries=1, base_delay=0, max_delay=0),
                "fallback_models": ["model-b"],
            },
        )
        assert await result.read() == TEXT
        assert [r.model for r in server.requests] == ["model-a", "model-a", "model-b"]
        # l0_options never reaches the server.
        assert all("l0_options" not in r.body for r in server.requests)
        await raw.close()


async def test_wrap_level_fallback_models_and_rewrapping() -> None:
    scripts = {"model-a": [Fault.status(401)], "model-b": [Fault.ok()]}
    async with ChaosServer(model_scripts=scripts, text=TEXT) as server:
        raw = openai.AsyncOpenAI(base_url=server.base_url, api_key="test")
        client = l0.wrap(l0.wrap(raw, retry=FAST), fallback_models=["model-b"])
        assert client.l0_client is raw
        assert client.l0_options == {"retry": FAST, "fallback_models": ["model-b"]}
        text = await client.chat.completions.create(
            model="model-a", messages=MESSAGES, stream=True
        ).read()
        assert text == TEXT
        assert [r.model for r in server.requests] == ["model-a", "model-b"]
        await raw.close()


async def test_continuation_prompt_reaches_the_wrapped_request() -> None:
    script = [Fault.drop_after(3), Fault.ok(text=" brown fox.")]
    async with ChaosServer(script=script, text="The quick brown fox.") as server:
        raw = openai.AsyncOpenAI(base_url=server.base_url, api_key="test")
        client = l0.wrap(
            raw,
            retry=FAST,
            continue_from_last_good_token=True,
            build_continuation_prompt=lambda checkpoint: f"Continue after: {checkpoint}",
        )
        result = client.chat.completions.create(model="chaos-1", messages=MESSAGES, stream=True)
        assert await result.read() == "The quick brown fox."
        second = server.requests[1].messages
        assert second[:-1] == MESSAGES
        assert second[-1] == {"role": "user", "content": "Continue after: The quick brown"}
        await raw.close()


async def test_wrap_errors_are_clear() -> None:
    sync = openai.OpenAI(api_key="test")
    with pytest.raises(l0.errors.UnsupportedClientError, match="AsyncOpenAI") as caught:
        l0.wrap(sync)
    assert isinstance(caught.value, TypeError)
    assert "plugin" not in str(caught.value)  # the caller's mistake, not a plugin bug
    sync.close()
    raw = openai.AsyncOpenAI(api_key="test", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(TypeError, match="retyr"):
        l0.wrap(raw, retyr=FAST)  # type: ignore[call-overload]
    client = l0.wrap(raw)
    with pytest.raises(TypeError, match="streaming calls"):
        client.chat.completions.create(  # type: ignore[unused-coroutine]
            model="m", messages=MESSAGES, l0_options={}
        )
    with pytest.raises(TypeError, match="fallback_models"):
        client.chat.completions.create(
            model="m", messages=MESSAGES, stream=True, l0_options={"fallback_models": "gpt"}
        )
    await raw.close()


async def test_wrapping_a_created_stream_gives_no_retries() -> None:
    async with ChaosServer(script=[Fault.drop_after(2), Fault.ok()], text=TEXT) as server:
        raw = openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        stream = await raw.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        with pytest.raises(l0.RetryExhaustedError):
            await l0.wrap(stream).read()
        stream = await raw.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        assert await l0.wrap(stream).read() == TEXT
        assert len(server.requests) == 2
        await raw.close()


async def test_sdk_retries_on_a_factory_client_are_warned_about_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    adapter = OpenAIAdapter()
    async with ChaosServer(text=TEXT) as server:
        retrying = openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=2)
        quiet = openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        with caplog.at_level(logging.WARNING, logger="l0.openai"):
            for client in (quiet, retrying, retrying):
                result = l0.run(
                    lambda c=client: c.chat.completions.create(
                        model="m", messages=MESSAGES, stream=True
                    ),
                    adapter=adapter,
                )
                assert await result.read() == TEXT
        warnings = [r for r in caplog.records if r.name == "l0.openai"]
        assert len(warnings) == 1
        assert "max_retries=2" in warnings[0].getMessage()
        await retrying.close()
        await quiet.close()
