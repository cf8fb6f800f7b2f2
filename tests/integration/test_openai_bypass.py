"""Issue 8: the SDK's own streaming helpers on a wrapped client warn once that L0 is bypassed."""

from __future__ import annotations

import warnings
from typing import Any

import openai
import pytest
from l0_openai import client as client_module
from l0_openai.client import BypassWarning

import l0
from l0.testing import ChaosServer

MESSAGES: Any = [{"role": "user", "content": "Say the sentence."}]


@pytest.fixture(autouse=True)
def fresh_warnings() -> None:
    client_module._warned.clear()


async def test_stream_helpers_warn_once_each() -> None:
    async with ChaosServer(text="Hello there.") as server:
        raw = openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        client = l0.wrap(raw)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            helper = client.chat.completions.stream
            client.responses.stream  # noqa: B018 - the access is what warns
        assert helper == raw.chat.completions.stream  # still the SDK's own, working
        # Only ours: a garbage collection in the block may add unrelated ResourceWarnings.
        messages = [str(w.message) for w in caught if w.category is BypassWarning]
        assert messages == [
            "client.chat.completions.stream() is the SDK's own streaming helper and bypasses "
            "L0: no retries, fallbacks, timeouts or guardrails. Use "
            "client.chat.completions.create(..., stream=True), which returns an l0.Result.",
            "client.responses.stream() is the SDK's own streaming helper and bypasses L0: no "
            "retries, fallbacks, timeouts or guardrails. Use client.responses.create(..., "
            "stream=True), which returns an l0.Result.",
        ]
        with warnings.catch_warnings(record=True) as again:
            warnings.simplefilter("always")
            client.chat.completions.stream  # noqa: B018 - once only
        assert not [w for w in again if w.category is BypassWarning]
        await raw.close()


async def test_raw_response_warns_only_when_streaming() -> None:
    async with ChaosServer(text="Hello there.") as server:
        raw = openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        client = l0.wrap(raw)
        with warnings.catch_warnings(record=True) as quiet:
            warnings.simplefilter("always")
            response = await client.chat.completions.with_raw_response.create(
                model="chaos-1", messages=MESSAGES
            )
        assert not [w for w in quiet if w.category is BypassWarning]
        assert response.parse().choices[0].message.content == "Hello there."
        with pytest.warns(BypassWarning, match=r"with_raw_response\.create\(stream=True\)"):
            streamed = await client.chat.completions.with_raw_response.create(
                model="chaos-1", messages=MESSAGES, stream=True
            )
        chunks = [chunk async for chunk in streamed.parse()]
        assert chunks
        await raw.close()
