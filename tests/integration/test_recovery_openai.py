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
