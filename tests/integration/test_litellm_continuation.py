"""Issue 12: ``l0.wrap(litellm)`` continues a kept answer with no prompt code, per provider.

The real ``litellm`` SDK talks to ``ChaosServer`` as an OpenAI-compatible server
(``openai/<model>`` with ``api_base``), so every continuation request is on the server's log.
"""

from __future__ import annotations

import json
from typing import Any

import litellm
import pytest
from l0_litellm.client import _provider_of, default_strategies

import l0
from l0.continuation_strategies import CONTINUATION_STRATEGIES as CONTINUATION
from l0.testing import ChaosServer, Fault, split_words

litellm.suppress_debug_info = True

pytestmark = [
    pytest.mark.filterwarnings("ignore:Item.*ReadOnly:UserWarning"),
    pytest.mark.filterwarnings("ignore:Items.*ReadOnly:UserWarning"),
    pytest.mark.filterwarnings("ignore::pydantic.PydanticDeprecatedSince211"),
]

LONG = (
    "Rivers carve their valleys over thousands of years, moving sand and stone downstream "
    "with every flood. Where the current slows, the river drops what it carries and builds "
    "wide plains of rich soil. Farmers settled on these plains early, because the water and "
    "the soil together fed whole cities, and the yearly floods renewed the fields each spring."
)
MESSAGES: Any = [{"role": "user", "content": "Rivers?"}]


def ask(server: ChaosServer, model: str, **options: Any) -> l0.Result:
    wrapped = l0.wrap(litellm, **options)
    return wrapped.acompletion(  # type: ignore[no-any-return]
        model=f"openai/{model}",
        api_base=server.base_url,
        api_key="test",
        messages=MESSAGES,
        stream=True,
    )


def roles(request: Any) -> list[str]:
    return [message["role"] for message in request.messages]


async def shown_text(result: l0.Result) -> str:
    """What a screen shows: tokens, minus whatever a ``reset`` withdraws."""
    shown = ""
    async for event in result:
        if event.is_token:
            shown += event.text or ""
        elif event.is_reset:
            shown = shown[: len(shown) - len(event.data["withdrawn"])]
    return shown


async def test_a_rejected_prefill_continues_through_a_user_turn_and_is_remembered() -> None:
    tokens = split_words(LONG)
    dead = [Fault.drop_after(20), *[Fault.status(503)] * 10]
    events: list[l0.ObservabilityEvent] = []
    async with ChaosServer(
        tokens=tokens, model_scripts={"primary": dead}, default=Fault.rejects_prefill()
    ) as server:
        options: dict[str, Any] = {
            "retry": l0.Retry(max_retries=0),
            "continue_from_last_good_token": True,
            "fallback_models": ["openai/backup"],
            "on_event": events.append,
        }
        result = ask(server, "primary", **options)
        assert await shown_text(result) == LONG
        assert result.state.content == LONG
        await result.wait_callbacks()
        first = server.requests
        assert [r.model for r in first] == ["primary", "backup", "backup"]
        # LiteLLM sent the kept text as a final assistant message; the server refused it.
        kept = "".join(tokens[:20])
        assert first[1].messages[-1] == {"role": "assistant", "content": kept}
        assert first[2].fault.kind == "rejects_prefill"
        assert roles(first[2]) == ["user", "user"]
        assert kept in first[2].messages[-1]["content"]
        chosen = [e.data for e in events if e.type == "CONTINUATION_STRATEGY"]
        assert chosen == [{"strategy": "user", "rejected": ["prefill"]}]

        # A second session in the process goes straight to what works for that model.
        server.reset()
        server.set_script(dead, model="primary")
        events.clear()
        again = ask(server, "primary", **options)
        assert await again.read() == LONG
        await again.wait_callbacks()
        assert [r.model for r in server.requests] == ["primary", "backup"]
        assert [roles(r)[-1] for r in server.requests] == ["user", "user"]
        chosen = [e.data for e in events if e.type == "CONTINUATION_STRATEGY"]
        assert chosen == [{"strategy": "user", "rejected": []}]


async def test_a_fallback_that_ignores_the_continuation_doubles_nothing() -> None:
    assert len(LONG) > 300  # longer than max_overlap
    tokens = split_words(LONG)
    dead = [Fault.drop_after(30), *[Fault.status(503)] * 10]
    async with ChaosServer(
        tokens=tokens, model_scripts={"primary": dead}, default=Fault.starts_over()
    ) as server:
        result = ask(
            server,
            "primary",
            retry=l0.Retry(max_retries=0),
            continue_from_last_good_token=True,
            fallback_models=["openai/backup"],
        )
        shown = ""
        async for event in result:
            assert not event.is_reset
            if event.is_token:
                shown += event.text or ""
        assert shown == LONG
        assert result.state.content == LONG
        assert [r.model for r in server.requests] == ["primary", "backup"]
        assert roles(server.requests[1])[-1] == "assistant"  # asked to continue; ignored it


async def test_a_prose_answer_cut_by_length_is_stitched_exactly() -> None:
    tokens = split_words(LONG)
    cut = [Fault.continues(max_tokens=12)] * 3
    async with ChaosServer(tokens=tokens, script=cut, default=Fault.continues()) as server:
        result = ask(server, "m", continue_on_length=3)
        shown = ""
        async for event in result:
            assert not event.is_reset
            if event.is_token:
                shown += event.text or ""
        assert shown == LONG
        assert result.state.content == LONG
        assert result.state.length_continuations == 3
        assert result.state.finish_reason == "stop"
        assert len(server.requests) == 4
        assert server.requests[3].messages[-1] == {
            "role": "assistant",
            "content": "".join(tokens[:36]),
        }


async def test_a_json_answer_cut_by_length_is_a_valid_document() -> None:
    document = {"title": "Rivers", "facts": [{"name": "silt", "note": 'carried "down"'}] * 3}
    text = json.dumps(document)
    tokens = [text[i : i + 7] for i in range(0, len(text), 7)]
    cut = [Fault.continues(max_tokens=9)] * 2
    async with ChaosServer(tokens=tokens, script=cut, default=Fault.continues()) as server:
        result = ask(server, "m", continue_on_length=2)
        answer = await result.read()
        assert json.loads(answer) == document
        assert answer == text
        assert result.state.length_continuations == 2
        assert [roles(r)[-1] for r in server.requests] == ["user", "assistant", "assistant"]
        assert server.requests[2].messages[-1]["content"] == "".join(tokens[:18])


async def test_the_strategies_option_and_its_per_call_override() -> None:
    tokens = split_words(LONG)
    async with ChaosServer(
        tokens=tokens, script=[Fault.drop_after(15)], default=Fault.continues()
    ) as server:
        options: dict[str, Any] = {
            "retry": l0.Retry(base_delay=0.0, max_delay=0.0),
            "continue_from_last_good_token": True,
            "continuation_strategies": ["user", "restart"],
        }
        result = ask(server, "chosen", **options)
        assert await result.read() == LONG
        assert roles(server.requests[1]) == ["user", "user"]

        server.reset()
        wrapped = l0.wrap(litellm, **options)
        again = wrapped.acompletion(
            model="openai/chosen",
            api_base=server.base_url,
            api_key="test",
            messages=MESSAGES,
            stream=True,
            l0_options={"continuation_strategies": ["restart"]},
        )
        assert await again.read() == LONG
        assert roles(server.requests[1]) == ["user"]  # the original request, sent again


async def test_config_chooses_the_continuation_strategy(
    isolated_config: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("L0_CONTINUATION_STRATEGIES", "user")
    async with ChaosServer(
        tokens=split_words(LONG), script=[Fault.drop_after(15)], default=Fault.continues()
    ) as server:
        result = ask(
            server,
            "configured",
            retry=l0.Retry(base_delay=0.0, max_delay=0.0),
            continue_from_last_good_token=True,
        )
        assert await result.read() == LONG
        assert roles(server.requests[1]) == ["user", "user"]


def test_bad_strategies_are_named_before_anything_starts() -> None:
    with pytest.raises(ValueError, match=r"continuation_strategies=\['prefil'\]: unknown strategy"):
        l0.wrap(litellm, continuation_strategies=["prefil"])
    with pytest.raises(TypeError, match=r"continuation_strategies='user'"):
        l0.wrap(litellm, continuation_strategies="user")
    wrapped = l0.wrap(litellm)
    with pytest.raises(ValueError, match=r"l0_options: continuation_strategies=\[\]: empty"):
        wrapped.acompletion(
            model="openai/m",
            messages=MESSAGES,
            stream=True,
            l0_options={"continuation_strategies": []},
        )


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        ({"model": "anthropic/claude-sonnet-4-5"}, ("prefill", "user", "restart")),
        ({"model": "deepseek/deepseek-chat"}, ("prefill", "user", "restart")),
        ({"model": "claude-x", "custom_llm_provider": "anthropic"}, ("prefill", "user", "restart")),
        ({"model": "gpt-4o"}, ("user", "restart")),
        ({"model": "openai/gpt-4o"}, ("user", "restart")),
        ({"model": "azure/my-deployment"}, ("user", "restart")),
        ({"model": "gemini/gemini-2.5-pro"}, ("user", "restart")),
        # An OpenAI-compatible server (vLLM, a gateway …) reached as ``openai/``.
        ({"model": "openai/llama", "api_base": "http://127.0.0.1:8000/v1"}, CONTINUATION),
        ({"model": "hosted_vllm/llama", "api_base": "http://127.0.0.1:8000/v1"}, CONTINUATION),
    ],
)
def test_default_strategies_follow_the_provider_litellm_routes_to(
    request_: dict[str, Any], expected: tuple[str, ...]
) -> None:
    provider, _, api_base = _provider_of(litellm, request_)
    assert default_strategies(provider, api_base) == expected
