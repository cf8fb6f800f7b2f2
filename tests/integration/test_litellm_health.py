"""Provider health covers ``l0.wrap(litellm)`` streams, keyed like the OpenAI wrapper's.

The real ``litellm`` SDK talks to ``ChaosServer`` as an OpenAI-compatible server
(``openai/<model>`` with ``api_base``); each test has its own plugin manager, hence its own
in-process health store.
"""

from __future__ import annotations

import asyncio
from typing import Any

import litellm
import openai
import pytest

import l0
from l0.errors import CircuitOpenError
from l0.health import Health, provider_key
from l0.testing import ChaosServer, Fault

litellm.suppress_debug_info = True

pytestmark = [
    pytest.mark.filterwarnings("ignore:Item.*ReadOnly:UserWarning"),
    pytest.mark.filterwarnings("ignore:Items.*ReadOnly:UserWarning"),
    pytest.mark.filterwarnings("ignore::pydantic.PydanticDeprecatedSince211"),
]

MESSAGES: Any = [{"role": "user", "content": "hi"}]


def requests_for(server: ChaosServer, model: str) -> int:
    return sum(1 for r in server.requests if r.model == model)


async def test_a_dead_model_opens_its_circuit_for_litellm_streams(isolated_config: None) -> None:
    pm = l0.build_plugin_manager(allow=["litellm", "openai"])
    health = Health(failure_threshold=3, open_seconds=30.0)
    async with ChaosServer() as server:
        server.set_default(Fault.status(503), model="dead")
        wrapped = l0.wrap(
            litellm,
            plugins=pm,
            health=health,
            retry=l0.Retry(max_retries=2, base_delay=0, max_delay=0),
        )

        def ask(**extra: Any) -> l0.Result:
            return wrapped.acompletion(  # type: ignore[no-any-return]
                model="openai/dead",
                api_base=server.base_url,
                api_key="test",
                messages=MESSAGES,
                stream=True,
                **extra,
            )

        fallback = {"l0_options": {"fallback_models": ["openai/alive"]}}
        texts = [await ask(**fallback).read() for _ in range(3)]
        assert all(texts)
        dead_before = requests_for(server, "dead")
        assert dead_before == 3  # the breaker opened after three outages in a row

        # Later sessions reach the fallback without a request to the dead model.
        assert all(await asyncio.gather(*(ask(**fallback).read() for _ in range(5))))
        assert requests_for(server, "dead") == dead_before

        # Without a fallback: the typed error, keyed by the server's URL and the model,
        # exactly as an OpenAI-wrapped client of the same server is.
        with pytest.raises(CircuitOpenError) as caught:
            await ask().read()
        assert caught.value.key == provider_key(server.base_url, "dead")

        # The same key: an OpenAI-wrapped client of that server sees the open circuit too.
        sdk = openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        client = l0.wrap(sdk, plugins=pm, health=health)
        result = await client.chat.completions.create(model="dead", messages=MESSAGES, stream=True)
        with pytest.raises(CircuitOpenError):
            await result.read()
        assert requests_for(server, "dead") == dead_before


def test_litellm_streams_without_api_base_are_keyed_by_provider() -> None:
    from l0_litellm.client import _health_key

    assert _health_key("anthropic", "claude-x", None) == "anthropic|claude-x"
    assert _health_key("openai", "m", "http://127.0.0.1:9/v1/") == "http://127.0.0.1:9/v1|m"
