"""Issue 8: ``l0.wrap(litellm)`` works the way the README says, against ChaosServer."""

from __future__ import annotations

from typing import Any

import litellm
import pytest
from l0_litellm import L0LiteLLM

import l0
from l0.testing import ChaosServer, Fault

pytestmark = [
    pytest.mark.filterwarnings("ignore:Item.*ReadOnly:UserWarning"),
    pytest.mark.filterwarnings("ignore:Items.*ReadOnly:UserWarning"),
    pytest.mark.filterwarnings("ignore::pydantic.PydanticDeprecatedSince211"),
]

TEXT = "The quick brown fox jumps over the lazy dog."
MESSAGES: Any = [{"role": "user", "content": "Say the sentence."}]
FAST = l0.Retry(base_delay=0.0, max_delay=0.0)


async def test_wrapped_litellm_retries_a_503_and_falls_back_by_model() -> None:
    async with ChaosServer(
        [Fault.status(503)], text=TEXT, model_scripts={"dead": [Fault.status(500)] * 9}
    ) as server:
        wrapped = l0.wrap(litellm, retry=FAST)
        assert isinstance(wrapped, L0LiteLLM)
        result = wrapped.acompletion(
            model="openai/chaos-1",
            api_base=server.base_url,
            api_key="test",
            messages=MESSAGES,
            stream=True,
        )
        assert isinstance(result, l0.Result)
        assert await result.read() == TEXT
        assert len(server.requests) == 2  # LiteLLM's own retries are off: one per attempt
        server.reset()
        fallback = l0.wrap(
            litellm,
            retry=l0.Retry(max_retries=1, base_delay=0, max_delay=0),
            fallback_models=["openai/chaos-1"],
        ).acompletion(
            model="openai/dead",
            api_base=server.base_url,
            api_key="test",
            messages=MESSAGES,
            stream=True,
        )
        assert await fallback.read() == TEXT
        # reset() restarts the shared script: the fallback model meets the 503 once too.
        assert [r.model for r in server.requests] == ["dead", "dead", "chaos-1", "chaos-1"]
        # Without stream=True the call is LiteLLM's own.
        whole = await wrapped.acompletion(
            model="openai/chaos-1", api_base=server.base_url, api_key="test", messages=MESSAGES
        )
        assert whole.choices[0].message.content == TEXT
        assert wrapped.model_cost is litellm.model_cost  # other attributes pass through


def test_wrap_litellm_rejects_unknown_options() -> None:
    with pytest.raises(TypeError, match=r"unknown L0 option\(s\) 'retyr'"):
        l0.wrap(litellm, retyr=FAST)  # type: ignore[call-overload]
