"""Opt-in content (``gen_ai.input.messages`` / ``gen_ai.output.messages``) and guardrail
violations on the attempt span that tripped them, with the real SDKs over real HTTP."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from opentelemetry import trace
from opentelemetry.trace import StatusCode

import l0
from l0.errors import GuardrailError
from l0.events import REQUEST_META_KEY, ObservabilityEvent
from l0.testing import ChaosServer, Fault
from tests.otel.conftest import Otel

FAST = l0.Retry(base_delay=0.0, max_delay=0.0)
TEXT = "The bridge opens at nine and closes at dusk."
MESSAGES: Any = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "When does the bridge open?"},
]


async def ask(server: ChaosServer, seen: list[ObservabilityEvent], **options: Any) -> str:
    options.setdefault("retry", FAST)
    client = l0.wrap(openai.AsyncOpenAI(base_url=server.base_url, api_key="test"), **options)
    with trace.get_tracer("app").start_as_current_span("handle request"):
        result = await client.chat.completions.create(
            model="gpt-4o",
            messages=MESSAGES,
            stream=True,
            l0_options={"on_event": seen.append},
        )
        text = await result.read()
        await result.wait_callbacks()
    await client.close()
    return str(text)


def summary(seen: list[ObservabilityEvent]) -> ObservabilityEvent:
    (event,) = [e for e in seen if e.type.value == "SESSION_SUMMARY"]
    return event


async def test_content_is_off_by_default_and_never_reaches_events(otel: Otel) -> None:
    seen: list[ObservabilityEvent] = []
    async with ChaosServer(text=TEXT) as server:
        assert await ask(server, seen) == TEXT
    (session,) = otel.named("chat gpt-4o")
    attrs = dict(session.attributes or {})
    assert "gen_ai.input.messages" not in attrs
    assert "gen_ai.output.messages" not in attrs
    # Nobody asked for content, so the session did not carry it at all.
    assert summary(seen)["output_text"] is None
    assert all("messages" not in e.meta[REQUEST_META_KEY] for e in seen)


@pytest.mark.parametrize("where", ["env", "pyproject"])
async def test_content_is_captured_on_opt_in(
    otel: Otel, monkeypatch: pytest.MonkeyPatch, tmp_path: Any, where: str
) -> None:
    if where == "env":
        monkeypatch.setenv("L0_OTEL_CAPTURE_CONTENT", "true")
    else:
        (tmp_path / "pyproject.toml").write_text("[tool.l0.otel]\ncapture_content = true\n")
        monkeypatch.chdir(tmp_path)
    seen: list[ObservabilityEvent] = []
    # A dropped first attempt: the output is the final answer, not the withdrawn text.
    async with ChaosServer(script=[Fault.drop_after(4), Fault.ok()], text=TEXT) as server:
        assert await ask(server, seen) == TEXT
    (session,) = otel.named("chat gpt-4o")
    attrs = dict(session.attributes or {})
    assert json.loads(str(attrs["gen_ai.input.messages"])) == [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {"role": "user", "parts": [{"type": "text", "content": "When does the bridge open?"}]},
    ]
    assert json.loads(str(attrs["gen_ai.output.messages"])) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": TEXT}],
            "finish_reason": "stop",
        }
    ]
    assert attrs["l0.retry.count"] == 1
    assert summary(seen)["output_text"] == TEXT
    assert seen[0].meta[REQUEST_META_KEY]["messages"] == MESSAGES


async def test_violation_is_recorded_on_the_attempt_that_tripped_it(otel: Otel) -> None:
    script = [Fault.ok(text="As an AI language model, I cannot know that."), Fault.ok()]
    seen: list[ObservabilityEvent] = []
    async with ChaosServer(script=script, text=TEXT) as server:
        assert await ask(server, seen, guardrails="recommended") == TEXT
    (session,) = otel.named("chat gpt-4o")
    first, second = otel.children(session)
    assert first.status.status_code is StatusCode.ERROR
    found = [dict(e.attributes or {}) for e in first.events if e.name == "l0.guardrail.violation"]
    assert found == [{"l0.guardrail.rule": "pattern", "l0.guardrail.severity": "error"}]
    assert dict(first.attributes or {})["l0.guardrail.rules"] == ("pattern",)
    assert dict(first.attributes or {})["error.type"] == "GuardrailError"
    assert [e.name for e in second.events] == []
    assert "l0.guardrail.rules" not in dict(second.attributes or {})


async def test_fatal_violation_on_the_give_up_attempt(otel: Otel) -> None:
    def no_bridges(ctx: Any) -> list[l0.GuardrailViolation]:
        if "bridge" in ctx.content:
            return [l0.GuardrailViolation(rule="no-bridges", message="b", severity="fatal")]
        return []

    rule = l0.GuardrailRule(name="no-bridges", check=no_bridges)
    seen: list[ObservabilityEvent] = []
    async with ChaosServer(text=TEXT) as server:
        with pytest.raises(l0.RetryExhaustedError) as raised:
            await ask(server, seen, guardrails=[rule])
    assert isinstance(raised.value.__cause__, GuardrailError)
    (session,) = otel.named("chat gpt-4o")
    (attempt,) = otel.children(session)
    assert dict(attempt.attributes or {})["l0.attempt.outcome"] == "give_up"
    found = [dict(e.attributes or {}) for e in attempt.events if e.name == "l0.guardrail.violation"]
    assert found == [{"l0.guardrail.rule": "no-bridges", "l0.guardrail.severity": "fatal"}]
    assert session.status.status_code is StatusCode.ERROR
