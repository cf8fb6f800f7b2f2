"""Recovery through the real openai SDK and a wrapped client against the chaos server.

No test here writes a continuation prompt: the wrapped client continues on its own.
"""

from __future__ import annotations

from typing import Any

import openai

import l0
from l0.testing import ChaosServer, Fault, split_words

LONG = (
    "Rivers carve their valleys over thousands of years, moving sand and stone downstream "
    "with every flood. Where the current slows, the river drops what it carries and builds "
    "wide plains of rich soil. Farmers settled on these plains early, because the water and "
    "the soil together fed whole cities, and the yearly floods renewed the fields each spring."
)


def wrapped(server: ChaosServer, **options: Any) -> Any:
    client = openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)
    return l0.wrap(client, **options)


async def test_a_fallback_that_starts_over_after_a_long_kept_text_doubles_nothing() -> None:
    assert len(LONG) > 300  # longer than max_overlap, the old look-back
    tokens = split_words(LONG)
    assert len(tokens) > 45
    dead = [Fault.drop_after(45), *[Fault.status(503)] * 5]
    async with ChaosServer(tokens=tokens, model_scripts={"primary": dead}) as server:
        client = wrapped(
            server,
            retry=l0.Retry(max_retries=1, base_delay=0.0, max_delay=0.0),
            continue_from_last_good_token=True,
            fallback_models=["backup"],
        )
        result = await client.chat.completions.create(
            model="primary", messages=[{"role": "user", "content": "Rivers?"}], stream=True
        )
        shown = ""
        async for event in result:
            if event.is_token:
                shown += event.text or ""
            elif event.is_reset:
                shown = shown[: len(shown) - len(event.data["withdrawn"])]
        assert result.state.content == LONG
        assert shown == LONG
        assert [r.model for r in server.requests] == ["primary", "primary", "backup"]


def roles(request: Any) -> list[str]:
    return [message["role"] for message in request.messages]


async def test_a_fallback_rejecting_the_prefill_continues_through_a_user_turn() -> None:
    tokens = split_words(LONG)
    dead = [Fault.drop_after(20), *[Fault.status(503)] * 10]
    events: list[l0.ObservabilityEvent] = []
    async with ChaosServer(
        tokens=tokens, model_scripts={"primary": dead}, default=Fault.rejects_prefill()
    ) as server:
        client = wrapped(
            server,
            retry=l0.Retry(max_retries=0),
            continue_from_last_good_token=True,
            fallback_models=["backup"],
            on_event=events.append,
        )
        request = {"messages": [{"role": "user", "content": "Rivers?"}], "stream": True}
        result = await client.chat.completions.create(model="primary", **request)
        assert await result.read() == LONG
        await result.wait_callbacks()
        first = server.requests
        assert [r.model for r in first] == ["primary", "backup", "backup"]
        assert roles(first[1])[-1] == "assistant"  # the prefill, rejected with a 400
        assert first[2].fault.kind == "rejects_prefill"
        kept = "".join(tokens[:20])
        assert roles(first[2]) == ["user", "user"]
        assert kept in first[2].messages[-1]["content"]
        chosen = [e.data for e in events if e.type == "CONTINUATION_STRATEGY"]
        assert chosen == [{"strategy": "user", "rejected": ["prefill"]}]

        # A second session in the process goes straight to what works for that model.
        server.reset()
        server.set_script(dead, model="primary")
        again = await client.chat.completions.create(model="primary", **request)
        assert await again.read() == LONG
        assert [roles(r)[-1] for r in server.requests] == ["user", "user"]
        assert len(server.requests) == 2


async def test_a_fallback_that_ignores_the_continuation_doubles_nothing() -> None:
    tokens = split_words(LONG)
    dead = [Fault.drop_after(30), *[Fault.status(503)] * 10]
    async with ChaosServer(
        tokens=tokens, model_scripts={"primary": dead}, default=Fault.starts_over()
    ) as server:
        client = wrapped(
            server,
            retry=l0.Retry(max_retries=0),
            continue_from_last_good_token=True,
            fallback_models=["backup"],
        )
        result = await client.chat.completions.create(
            model="primary", messages=[{"role": "user", "content": "Rivers?"}], stream=True
        )
        shown = ""
        async for event in result:
            assert not event.is_reset
            if event.is_token:
                shown += event.text or ""
        assert shown == LONG
        assert roles(server.requests[1])[-1] == "assistant"  # asked to continue; ignored it
