"""Issue 8 item 2: forgetting ``stream=True`` says so, through the real SDKs and ChaosServer."""

from __future__ import annotations

from typing import Any

import litellm
import openai
import pytest

import l0
from l0.errors import AdapterNotFoundError, InvalidStreamError
from l0.testing import ChaosServer

pytestmark = [
    pytest.mark.usefixtures("isolated_config"),
    pytest.mark.filterwarnings("ignore:Item.*ReadOnly:UserWarning"),
    pytest.mark.filterwarnings("ignore:Items.*ReadOnly:UserWarning"),
    pytest.mark.filterwarnings("ignore::pydantic.PydanticDeprecatedSince211"),
]

MESSAGES: Any = [{"role": "user", "content": "Say the sentence."}]
NO_RETRY = l0.Retry(attempts=0, max_retries=0)


async def test_openai_chat_completion_without_stream_true() -> None:
    async with ChaosServer(text="Hello there.") as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        result = l0.run(
            lambda: client.chat.completions.create(model="chaos-1", messages=MESSAGES),
            retry=NO_RETRY,
        )
        with pytest.raises(AdapterNotFoundError) as info:
            await result.read()
    message = str(info.value)
    assert "a non-streaming ChatCompletion; pass stream=True" in message
    assert "not loaded" not in message
    assert len(server.requests) == 1  # a programming error: not retried


async def test_litellm_model_response_without_stream_true() -> None:
    async with ChaosServer(text="Hello there.") as server:
        result = l0.run(
            lambda: litellm.acompletion(
                model="openai/chaos-1",
                api_base=server.base_url,
                api_key="test",
                messages=MESSAGES,
                num_retries=0,
                max_retries=0,
            ),
            retry=NO_RETRY,
        )
        with pytest.raises(AdapterNotFoundError) as info:
            await result.read()
    message = str(info.value)
    assert "a non-streaming ModelResponse; pass stream=True" in message
    assert "not loaded" not in message


async def test_hint_checks_whether_the_plugin_is_loaded() -> None:
    # A manager without entry points really has no openai plugin: that is what is said.
    pm = l0.build_plugin_manager(entry_points=False)
    async with ChaosServer(text="Hello there.") as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        result = l0.run(
            lambda: client.chat.completions.create(model="chaos-1", messages=MESSAGES, stream=True),
            retry=NO_RETRY,
            plugins=pm,
        )
        # The builtin adapter takes any async iterator; the SDK's chunks are what it rejects.
        with pytest.raises(InvalidStreamError) as info:
            await result.read()
    message = str(info.value)
    assert "its plugin 'openai' is not loaded in this plugin manager" in message
    # With the plugin loaded, a stream it does not read is not blamed on loading.
    loaded = l0.build_plugin_manager()
    assert loaded.get_plugin("openai") is not None
    from l0.adapters import install_hint

    hint = install_hint(openai.AsyncOpenAI(api_key="x"), plugins=loaded)
    assert "not loaded" not in hint
    assert "plugin 'openai' is loaded" in hint
