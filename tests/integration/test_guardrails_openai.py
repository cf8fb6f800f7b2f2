"""Guardrails through the real ``openai`` SDK against the chaos server.

The first answer trips a guardrail, the second is clean: the consumer sees only the clean text,
the violation is on the state and the server saw exactly two requests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import openai
import pytest

import l0
from l0.testing import ChaosServer, Fault
from tests.runtime_helpers import consume

FAST = l0.Retry(base_delay=0.0, max_delay=0.0)
MESSAGES: Any = [{"role": "user", "content": "Answer."}]
CLEAN = "The bridge opens at nine and closes at dusk."


def factory(client: openai.AsyncOpenAI) -> Callable[[], Any]:
    return lambda: client.chat.completions.create(model="chaos-1", messages=MESSAGES, stream=True)


@pytest.mark.parametrize(
    ("first", "guardrails", "rule"),
    [
        (Fault.ok(text="As an AI language model, I cannot know that."), "recommended", "pattern"),
        (Fault.ok(tokens=['{"a": ', "[1, 2", "}", ', "b": 3}']), "json_only", "strict_json"),
        (Fault.ok(tokens=["Sure", "."]), "json_only", "strict_json"),
    ],
)
async def test_guardrail_trips_then_clean_answer(
    chaos_server: ChaosServer, first: Fault, guardrails: str, rule: str
) -> None:
    clean = CLEAN if guardrails == "recommended" else '{"a": [1, 2], "b": 3}'
    chaos_server.set_script([first, Fault.ok(text=clean)])
    client = openai.AsyncOpenAI(base_url=chaos_server.base_url, api_key="test", max_retries=0)
    seen: list[l0.GuardrailViolation] = []
    result = l0.run(factory(client), guardrails=guardrails, retry=FAST, on_violation=seen.append)
    shown, events = await consume(result)
    await result.wait_callbacks()
    assert shown == clean
    assert result.state.content == clean
    assert [v.rule for v in result.state.violations] == [rule]
    assert seen == result.state.violations
    errors = [e for e in events if e.is_error]
    assert len(errors) == 1
    assert errors[0].data["category"] == "content"
    assert errors[0].data["will_retry"]
    assert len(chaos_server.requests) == 2
    await client.close()


async def test_looping_answer_is_cut_off_and_retried(chaos_server: ChaosServer) -> None:
    loop = ["I keep ", "going round ", "in circles. "] * 400
    chaos_server.set_script([Fault.ok(tokens=loop), Fault.ok(text=CLEAN)])
    client = openai.AsyncOpenAI(base_url=chaos_server.base_url, api_key="test", max_retries=0)
    result = l0.run(factory(client), guardrails=l0.Guardrails.strict(), retry=FAST)
    shown, events = await consume(result)
    assert shown == CLEAN
    assert [v.rule for v in result.state.violations] == ["repetition"]
    reset = next(e for e in events if e.is_reset)
    assert reset.data["withdrawn_tokens"] < 60  # of 1200 tokens sent: the loop was cut early
    assert len(chaos_server.requests) == 2
    await client.close()
