"""``l0.wrap(litellm)`` describes its request to exporters as the OpenAI wrapper does: the
provider and model of each stream, and the input messages when content capture is on."""

from __future__ import annotations

import json
from typing import Any

import litellm
import pytest

import l0
from l0.events import REQUEST_META_KEY, ObservabilityEvent
from l0.testing import ChaosServer, Fault
from tests.otel.conftest import Otel

litellm.suppress_debug_info = True

pytestmark = [
    pytest.mark.filterwarnings("ignore:Item.*ReadOnly:UserWarning"),
    pytest.mark.filterwarnings("ignore:Items.*ReadOnly:UserWarning"),
    pytest.mark.filterwarnings("ignore::pydantic.PydanticDeprecatedSince211"),
]

TEXT = "The bridge opens at nine and closes at dusk."
MESSAGES: Any = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "When does the bridge open?"},
]


async def ask(server: ChaosServer, seen: list[ObservabilityEvent]) -> str:
    wrapped = l0.wrap(
        litellm,
        retry=l0.Retry(base_delay=0.0, max_delay=0.0),
        fallback_models=["openai/backup-model"],
        on_event=seen.append,
    )
    result = wrapped.acompletion(
        model="openai/bridge-model",
        api_base=server.base_url,
        api_key="test",
        messages=MESSAGES,
        stream=True,
    )
    text = await result.read()
    await result.wait_callbacks()
    return str(text)


async def test_litellm_input_messages_are_captured_on_opt_in(
    otel: Otel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("L0_OTEL_CAPTURE_CONTENT", "true")
    seen: list[ObservabilityEvent] = []
    async with ChaosServer(script=[Fault.drop_after(4), Fault.ok()], text=TEXT) as server:
        assert await ask(server, seen) == TEXT
    (session,) = otel.named("chat bridge-model")
    attrs = dict(session.attributes or {})
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.request.model"] == "bridge-model"
    assert json.loads(str(attrs["gen_ai.input.messages"])) == [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {"role": "user", "parts": [{"type": "text", "content": "When does the bridge open?"}]},
    ]
    assert json.loads(str(attrs["gen_ai.output.messages"])) == [
        {"role": "assistant", "parts": [{"type": "text", "content": TEXT}], "finish_reason": "stop"}
    ]
    request = seen[0].meta[REQUEST_META_KEY]
    assert request["messages"] == MESSAGES
    assert request["models"] == ["bridge-model", "backup-model"]


async def test_litellm_messages_stay_out_of_events_by_default(otel: Otel) -> None:
    seen: list[ObservabilityEvent] = []
    async with ChaosServer(text=TEXT) as server:
        assert await ask(server, seen) == TEXT
    (session,) = otel.named("chat bridge-model")
    assert "gen_ai.input.messages" not in dict(session.attributes or {})
    assert seen
    assert all("messages" not in e.meta[REQUEST_META_KEY] for e in seen)
