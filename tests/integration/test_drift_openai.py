"""Drift detection through the real ``openai`` SDK against the chaos server.

The first answer degrades, the second is clean: the consumer must end up with the clean text
only, ``on_drift`` must fire, and the server must see exactly two requests.
"""

from __future__ import annotations

from typing import Any

import openai

import l0
from l0.drift import DriftConfig
from l0.testing import ChaosServer, Fault
from tests.drift_texts import JSON_COMPACT, PROSE

FAST = l0.Retry(attempts=2, base_delay=0.0, max_delay=0.0)
MESSAGES: Any = [{"role": "user", "content": "Summarise the meeting."}]


async def run_script(first: str, second: str, drift: Any) -> tuple[str, list[Any], int]:
    script = [Fault.ok(text=first), Fault.ok(text=second)]
    async with ChaosServer(script) as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        drifts: list[tuple[list[str], float | None]] = []
        result = l0.run(
            lambda: client.chat.completions.create(model="m", messages=MESSAGES, stream=True),
            retry=FAST,
            drift=drift,
            on_drift=lambda types, confidence: drifts.append((types, confidence)),
        )
        shown = await result.read()
        await result.wait_callbacks()
        assert result.state.content == shown
        await client.close()
        return shown, drifts, len(server.requests)


async def test_looping_answer_is_retried_and_the_clean_one_delivered() -> None:
    looping = PROSE[:500] + " I apologize for the confusion." * 40
    shown, drifts, requests = await run_script(looping, PROSE, drift=True)
    assert shown == PROSE
    assert requests == 2
    assert drifts
    assert "repetition" in drifts[0][0]


async def test_json_turning_into_prose_is_retried() -> None:
    cut = JSON_COMPACT.index("}, ", 900) + 3  # between two records, outside any string
    drifting = JSON_COMPACT[:cut] + " Sorry, I will describe the remaining users in words instead."
    shown, drifts, requests = await run_script(
        drifting, JSON_COMPACT, drift=DriftConfig(detectors=["format_drift"])
    )
    assert shown == JSON_COMPACT
    assert requests == 2
    assert drifts == [(["format_drift"], drifts[0][1])]
