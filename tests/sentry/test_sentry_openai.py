"""``l0-sentry`` against the real Sentry SDK, driven by the real ``openai`` SDK over HTTP.

Recovered sessions leave breadcrumbs and a span, never an event; a session that gives up sends
exactly one event with the session's context and tags.
"""

from __future__ import annotations

import logging
from typing import Any

import openai
import pytest
import sentry_sdk

import l0
from l0.testing import ChaosServer, Fault
from tests.sentry.conftest import CapturingTransport

FAST = l0.Retry(base_delay=0.0, max_delay=0.0)
MESSAGES: Any = [{"role": "user", "content": "Say it."}]
TEXT = "The bridge opens at nine and closes at dusk."


async def run_session(server: ChaosServer, model: str = "gpt-4o", **options: Any) -> Any:
    options.setdefault("retry", FAST)
    client = l0.wrap(openai.AsyncOpenAI(base_url=server.base_url, api_key="test"), **options)
    outcome: Any
    with sentry_sdk.start_transaction(op="http.server", name="handle request"):
        try:
            result = await client.chat.completions.create(
                model=model, messages=MESSAGES, stream=True
            )
            outcome = await result.read()
        except Exception as exc:
            outcome = exc
    await client.close()
    return outcome


def crumbs(transport: CapturingTransport) -> list[dict[str, Any]]:
    """The L0 breadcrumbs on the scope, read through a probe message the app might send."""
    sentry_sdk.capture_message("probe")
    sentry_sdk.flush()
    probe = [e for e in transport.errors() if e.get("message") == "probe"][-1]
    values = probe.get("breadcrumbs", {}).get("values", [])
    return [c for c in values if c.get("category") == "l0"]


def session_spans(transport: CapturingTransport) -> list[dict[str, Any]]:
    sentry_sdk.flush()
    (tx,) = transport.transactions()
    assert tx["transaction"] == "handle request"
    return [s for s in transport.spans() if s["op"] == "gen_ai.chat"]


def l0_errors(transport: CapturingTransport) -> list[dict[str, Any]]:
    return [e for e in transport.errors() if e.get("logger") == "l0"]


async def test_clean_success(sentry: CapturingTransport) -> None:
    async with ChaosServer(text=TEXT) as server:
        assert await run_session(server) == TEXT
    (span,) = session_spans(sentry)
    assert span["name"] == "chat gpt-4o"
    assert span["status"] == "ok"
    assert span["data"]["l0.status"] == "success"
    assert span["data"]["gen_ai.request.model"] == "gpt-4o"
    assert l0_errors(sentry) == []
    assert [c["message"] for c in crumbs(sentry)] == [
        "session start: gpt-4o",
        "session end: success",
    ]


@pytest.mark.parametrize(
    ("fault", "reason", "extra"),
    [
        (Fault.drop_after(3), "network", ["network error: APIConnectionError"]),
        (Fault.status(429, headers={"Retry-After": "0"}), "transient", []),
    ],
    ids=["drop", "429"],
)
async def test_fault_then_retry_leaves_breadcrumbs_only(
    sentry: CapturingTransport, fault: Fault, reason: str, extra: list[str]
) -> None:
    async with ChaosServer(script=[fault, Fault.ok()], text=TEXT) as server:
        assert await run_session(server) == TEXT
    (span,) = session_spans(sentry)
    assert span["status"] == "ok"
    assert span["data"]["l0.retry_count"] == 1
    assert l0_errors(sentry) == []
    trail = crumbs(sentry)
    assert [c["message"] for c in trail] == [
        "session start: gpt-4o",
        *extra,
        f"retry: attempt 2 ({reason})",
        "session end: success",
    ]
    retry = trail[-2]
    assert retry["level"] == "warning"
    assert retry["data"]["reason"] == reason
    assert retry["data"]["attempt"] == 2


async def test_dead_primary_then_fallback(sentry: CapturingTransport) -> None:
    dead = {"gpt-dead": [Fault.status(503)] * 10}
    async with ChaosServer(text=TEXT, model_scripts=dead) as server:
        outcome = await run_session(
            server,
            model="gpt-dead",
            fallback_models=["gpt-backup"],
            retry=l0.Retry(max_retries=1, base_delay=0.0, max_delay=0.0),
        )
    assert outcome == TEXT
    (span,) = session_spans(sentry)
    assert span["data"]["l0.fallback_depth"] == 1
    assert l0_errors(sentry) == []
    assert [c["message"] for c in crumbs(sentry)] == [
        "session start: gpt-dead",
        "retry: attempt 2 (transient)",
        "fallback: stream 0 -> 1",
        "session end: success",
    ]


async def test_guardrail_violation_then_retry(sentry: CapturingTransport) -> None:
    script = [Fault.ok(text="As an AI language model, I cannot know that."), Fault.ok()]
    async with ChaosServer(script=script, text=TEXT) as server:
        assert await run_session(server, guardrails="recommended") == TEXT
    assert l0_errors(sentry) == []
    trail = crumbs(sentry)
    assert [c["message"] for c in trail] == [
        "session start: gpt-4o",
        "guardrail violation: pattern",
        "retry: attempt 2 (content)",
        "session end: success",
    ]
    # Reported when the attempt that tripped it ended, with its severity (not from the summary).
    assert trail[1]["data"]["rule"] == "pattern"
    assert trail[1]["data"]["severity"] == "error"
    assert trail[1]["data"]["attempt"] == 1


async def test_give_up_sends_exactly_one_event(sentry: CapturingTransport) -> None:
    async with ChaosServer(default=Fault.status(500)) as server:
        outcome = await run_session(
            server, retry=l0.Retry(max_retries=1, base_delay=0.0, max_delay=0.0)
        )
    assert isinstance(outcome, l0.RetryExhaustedError)
    sentry_sdk.flush()
    (event,) = sentry.errors()
    assert event["level"] == "error"
    (exception,) = event["exception"]["values"]
    assert exception["type"] == "InternalServerError"
    assert exception["module"] == "openai"
    assert exception["mechanism"] == {"type": "l0", "handled": False}
    assert exception["value"].startswith("Error code: 500")
    assert exception["stacktrace"]["frames"]  # the error object itself, with its traceback
    assert event["tags"]["gen_ai.request.model"] == "gpt-4o"
    assert event["tags"]["gen_ai.provider.name"] == "openai"
    assert event["tags"]["l0.attempts"] == 2
    assert event["tags"]["l0.error_category"] == "transient"
    context = event["contexts"]["l0"]
    assert context["model"] == "gpt-4o"
    assert context["attempts"] == 2
    assert context["fallback_index"] == 0
    assert context["category"] == "transient"
    assert len(context["stream_id"]) == 36
    messages = [c["message"] for c in event["breadcrumbs"]["values"] if c["category"] == "l0"]
    assert messages == [
        "session start: gpt-4o",
        "retry: attempt 2 (transient)",
        "gave up: transient; Retry.max_retries=1 used up",
    ]
    (span,) = session_spans(sentry)
    assert span["status"] in ("internal_error", "error")  # span v2 reports "error"


async def test_disabled_by_environment(
    sentry: CapturingTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("L0_SENTRY_ENABLED", "false")
    async with ChaosServer(default=Fault.status(500)) as server:
        outcome = await run_session(
            server, retry=l0.Retry(max_retries=0, base_delay=0.0, max_delay=0.0)
        )
    assert isinstance(outcome, l0.RetryExhaustedError)
    assert session_spans(sentry) == []
    assert l0_errors(sentry) == []
    assert crumbs(sentry) == []


async def test_bad_setting_warns_and_capture_can_be_turned_off(
    sentry: CapturingTransport, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("L0_SENTRY_BREADCRUMBS", "sometimes")
    monkeypatch.setenv("L0_SENTRY_CAPTURE_ERRORS", "off")
    with caplog.at_level(logging.WARNING, logger="l0.sentry"):
        async with ChaosServer(default=Fault.status(500)) as server:
            outcome = await run_session(
                server, retry=l0.Retry(max_retries=0, base_delay=0.0, max_delay=0.0)
            )
    assert isinstance(outcome, l0.RetryExhaustedError)
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "l0.sentry"]
    assert "$L0_SENTRY_BREADCRUMBS" in warning
    assert "sentry.breadcrumbs = 'sometimes'" in warning
    assert l0_errors(sentry) == []  # capture_errors is off
    assert crumbs(sentry)[0]["message"] == "session start: gpt-4o"  # default kept
