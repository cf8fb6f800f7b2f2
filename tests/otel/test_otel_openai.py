"""``l0-otel`` against the real OpenTelemetry SDK, driven by the real ``openai`` SDK over HTTP.

Each scenario runs one wrapped-client session against ``l0.testing.ChaosServer`` inside the
caller's own span, then checks the span tree, the attributes and the metric points.
"""

from __future__ import annotations

from typing import Any

import openai
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

import l0
from l0.testing import ChaosServer, Fault
from tests.otel.conftest import Otel

FAST = l0.Retry(base_delay=0.0, max_delay=0.0)
MESSAGES: Any = [{"role": "user", "content": "Say it."}]
TEXT = "The bridge opens at nine and closes at dusk."
BASE = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai"}


async def run_session(
    server: ChaosServer, model: str = "gpt-4o", **options: Any
) -> tuple[str | None, BaseException | None]:
    options.setdefault("retry", FAST)
    client = l0.wrap(openai.AsyncOpenAI(base_url=server.base_url, api_key="test"), **options)
    text: str | None = None
    error: BaseException | None = None
    with trace.get_tracer("app").start_as_current_span("handle request"):
        try:
            result = await client.chat.completions.create(
                model=model,
                messages=MESSAGES,
                stream=True,
                stream_options={"include_usage": True},
            )
            text = await result.read()
        except Exception as exc:
            error = exc
    await client.close()
    return text, error


def tree(otel: Otel) -> tuple[ReadableSpan, ReadableSpan, list[ReadableSpan]]:
    """The caller's span, the one session span under it, and its attempt spans."""
    (root,) = otel.named("handle request")
    (session,) = otel.children(root)
    attempts = otel.children(session)
    assert all(a.name == "l0.attempt" for a in attempts)
    return root, session, attempts


def events(span: ReadableSpan, name: str) -> list[dict[str, Any]]:
    return [dict(e.attributes or {}) for e in span.events if e.name == name]


async def test_clean_success(otel: Otel) -> None:
    async with ChaosServer(text=TEXT) as server:
        text, error = await run_session(server)
    assert error is None
    assert text == TEXT
    _, session, attempts = tree(otel)
    assert session.name == "chat gpt-4o"
    assert session.kind is SpanKind.CLIENT
    assert session.status.status_code is StatusCode.OK
    attrs = dict(session.attributes or {})
    assert {k: attrs[k] for k in BASE} == BASE
    assert attrs["gen_ai.request.model"] == "gpt-4o"
    assert attrs["gen_ai.response.model"] == "gpt-4o"
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs["gen_ai.usage.output_tokens"] == 9
    assert isinstance(attrs["gen_ai.usage.input_tokens"], int)
    assert attrs["gen_ai.usage.input_tokens"] > 0
    assert attrs["l0.outcome"] == "success"
    assert attrs["l0.attempts"] == 1
    assert attrs["l0.retry.count"] == 0
    assert attrs["l0.token_count"] == 9
    assert "l0.retry.reasons" not in attrs
    assert len(attempts) == 1
    (attempt,) = attempts
    assert dict(attempt.attributes or {})["l0.attempt.outcome"] == "success"
    assert attempt.status.status_code is StatusCode.UNSET
    assert session.events == ()

    labels = {**BASE, "gen_ai.request.model": "gpt-4o"}
    assert otel.points("l0.sessions") == [({**labels, "l0.outcome": "success"}, 1)]
    ((duration_attrs, (count, seconds)),) = otel.points("gen_ai.client.operation.duration")
    assert duration_attrs == {**labels, "gen_ai.response.model": "gpt-4o"}
    assert count == 1
    assert 0 < seconds < 30
    usage = sorted(
        otel.points("gen_ai.client.token.usage"), key=lambda p: p[0]["gen_ai.token.type"]
    )
    assert [(p[0]["gen_ai.token.type"], p[1][1]) for p in usage] == [
        ("input", attrs["gen_ai.usage.input_tokens"]),
        ("output", 9),
    ]
    assert [(a, v[0]) for a, v in otel.points("l0.time_to_first_token")] == [(labels, 1)]
    answered = {**labels, "gen_ai.response.model": "gpt-4o"}
    assert [(a, v[0]) for a, v in otel.points("l0.inter_token_gap")] == [(answered, 1)]
    assert otel.points("l0.retries") == []
    assert otel.points("l0.fallbacks") == []


async def test_drop_then_retry(otel: Otel) -> None:
    async with ChaosServer(script=[Fault.drop_after(3), Fault.ok()], text=TEXT) as server:
        text, error = await run_session(server)
    assert error is None
    assert text == TEXT
    _, session, attempts = tree(otel)
    assert session.status.status_code is StatusCode.OK
    attrs = dict(session.attributes or {})
    assert attrs["l0.outcome"] == "recovered"
    assert attrs["l0.attempts"] == 2
    assert attrs["l0.retry.reasons"] == ("network",)
    # The dropped attempt was paid for (estimated: it reported no usage) but not kept.
    paid, kept = attrs["l0.tokens.paid"], attrs["l0.tokens.kept"]
    assert isinstance(paid, int)
    assert isinstance(kept, int)
    assert paid > kept > 0
    assert attrs["l0.usage.estimated"] is True
    first, second = attempts
    assert first.status.status_code is StatusCode.ERROR
    assert dict(first.attributes or {})["l0.attempt.outcome"] == "retry"
    assert dict(first.attributes or {})["l0.retry.reason"] == "network"
    assert events(first, "l0.network_error") == [
        {"error.type": "APIConnectionError", "l0.error.category": "network"}
    ]
    assert dict(second.attributes or {})["l0.attempt.outcome"] == "success"
    (retry,) = events(session, "l0.retry")
    assert retry["l0.attempt"] == 2
    assert retry["l0.retry.reason"] == "network"
    labels = {**BASE, "gen_ai.request.model": "gpt-4o"}
    assert otel.points("l0.retries") == [({**labels, "l0.retry.reason": "network"}, 1)]
    assert otel.points("l0.sessions") == [({**labels, "l0.outcome": "recovered"}, 1)]
    assert [v[0] for _, v in otel.points("l0.time_to_first_token")] == [2]


async def test_429_then_retry(otel: Otel) -> None:
    script = [Fault.status(429, headers={"Retry-After": "0"}), Fault.ok()]
    async with ChaosServer(script=script, text=TEXT) as server:
        text, _ = await run_session(server)
    assert text == TEXT
    _, session, attempts = tree(otel)
    attrs = dict(session.attributes or {})
    assert attrs["l0.outcome"] == "recovered"
    assert attrs["l0.retry.reasons"] == ("transient",)
    first, second = attempts
    assert first.status.status_code is StatusCode.ERROR
    assert dict(first.attributes or {})["error.type"] == "RateLimitError"
    assert "l0.ttft_ms" not in dict(first.attributes or {})
    assert events(first, "l0.network_error") == []
    assert dict(second.attributes or {})["l0.attempt.outcome"] == "success"
    labels = {**BASE, "gen_ai.request.model": "gpt-4o"}
    assert otel.points("l0.retries") == [({**labels, "l0.retry.reason": "transient"}, 1)]


async def test_dead_primary_then_fallback(otel: Otel) -> None:
    dead = {"gpt-dead": [Fault.status(503)] * 10}
    async with ChaosServer(text=TEXT, model_scripts=dead) as server:
        text, _ = await run_session(
            server,
            model="gpt-dead",
            fallback_models=["gpt-backup"],
            retry=l0.Retry(max_retries=1, base_delay=0.0, max_delay=0.0),
        )
    assert text == TEXT
    _, session, attempts = tree(otel)
    assert session.name == "chat gpt-dead"
    assert session.status.status_code is StatusCode.OK
    attrs = dict(session.attributes or {})
    assert attrs["l0.outcome"] == "recovered"
    assert attrs["l0.fallback.index"] == 1
    assert attrs["gen_ai.request.model"] == "gpt-dead"
    assert attrs["gen_ai.response.model"] == "gpt-backup"
    assert [dict(a.attributes or {})["gen_ai.request.model"] for a in attempts] == [
        "gpt-dead",
        "gpt-dead",
        "gpt-backup",
    ]
    assert [dict(a.attributes or {})["l0.attempt.outcome"] for a in attempts] == [
        "retry",
        "fallback",
        "success",
    ]
    (fallback,) = events(session, "l0.fallback")
    assert (fallback["l0.fallback.from_index"], fallback["l0.fallback.index"]) == (0, 1)
    dead_labels = {**BASE, "gen_ai.request.model": "gpt-dead"}
    assert otel.points("l0.fallbacks") == [({**dead_labels, "l0.fallback.reason": "transient"}, 1)]
    # The session counts under the model it asked for; the answer came from the fallback.
    assert otel.points("l0.sessions") == [({**dead_labels, "l0.outcome": "recovered"}, 1)]
    ((duration_attrs, _),) = otel.points("gen_ai.client.operation.duration")
    assert duration_attrs == {**dead_labels, "gen_ai.response.model": "gpt-backup"}
    ttft_models = [a["gen_ai.request.model"] for a, _ in otel.points("l0.time_to_first_token")]
    assert ttft_models == ["gpt-backup"]


async def test_guardrail_violation_then_retry(otel: Otel) -> None:
    script = [Fault.ok(text="As an AI language model, I cannot know that."), Fault.ok()]
    async with ChaosServer(script=script, text=TEXT) as server:
        text, _ = await run_session(server, guardrails="recommended")
    assert text == TEXT
    _, session, attempts = tree(otel)
    attrs = dict(session.attributes or {})
    assert attrs["l0.outcome"] == "recovered"
    assert attrs["l0.guardrail.rules"] == ("pattern",)
    assert attrs["l0.retry.reasons"] == ("content",)
    first, second = attempts
    assert events(session, "l0.guardrail.violation") == [{"l0.guardrail.rule": "pattern"}]
    assert first.status.status_code is StatusCode.ERROR
    assert dict(first.attributes or {})["l0.retry.reason"] == "content"
    assert dict(second.attributes or {})["l0.attempt.outcome"] == "success"
    labels = {**BASE, "gen_ai.request.model": "gpt-4o"}
    assert otel.points("l0.guardrail.violations") == [
        ({**labels, "l0.guardrail.rule": "pattern"}, 1)
    ]
    assert otel.points("l0.retries") == [({**labels, "l0.retry.reason": "content"}, 1)]


async def test_give_up(otel: Otel) -> None:
    async with ChaosServer(default=Fault.status(500)) as server:
        text, error = await run_session(
            server, retry=l0.Retry(max_retries=1, base_delay=0.0, max_delay=0.0)
        )
    assert text is None
    assert isinstance(error, l0.RetryExhaustedError)
    _, session, attempts = tree(otel)
    assert session.status.status_code is StatusCode.ERROR
    assert "InternalServerError" in (session.status.description or "")
    attrs = dict(session.attributes or {})
    assert attrs["l0.outcome"] == "error"
    assert attrs["error.type"] == "InternalServerError"
    assert attrs["l0.error.category"] == "transient"
    assert attrs["l0.attempts"] == 2
    (exception,) = events(session, "exception")
    assert exception["exception.type"] == "openai.InternalServerError"
    assert "500" in str(exception["exception.message"])
    assert [dict(a.attributes or {})["l0.attempt.outcome"] for a in attempts] == [
        "retry",
        "give_up",
    ]
    assert all(a.status.status_code is StatusCode.ERROR for a in attempts)
    labels = {**BASE, "gen_ai.request.model": "gpt-4o"}
    assert otel.points("l0.sessions") == [({**labels, "l0.outcome": "error"}, 1)]
    ((duration_attrs, (count, _)),) = otel.points("gen_ai.client.operation.duration")
    assert duration_attrs == {**labels, "error.type": "InternalServerError"}
    assert count == 1
    assert otel.points("gen_ai.client.token.usage") == []


@pytest.mark.parametrize("value", ["0", "false", "off"])
async def test_disabled_by_environment(
    otel: Otel, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("L0_OTEL_ENABLED", value)
    async with ChaosServer(text=TEXT) as server:
        text, _ = await run_session(server)
    assert text == TEXT
    (root,) = otel.named("handle request")
    assert otel.children(root) == []
    assert otel.points("l0.sessions") == []


async def test_timeout_and_zero_output_are_visible(otel: Otel) -> None:
    script = [Fault.slow_first_token(5), Fault.zero_output(), Fault.ok()]
    async with ChaosServer(script=script, text=TEXT) as server:
        text, _ = await run_session(server, timeout=l0.Timeout(initial_token=0.3))
    assert text == TEXT
    _, session, attempts = tree(otel)
    assert len(attempts) == 3
    (timeout,) = events(attempts[0], "l0.timeout")
    assert timeout["l0.timeout.type"] == "initial"
    assert timeout["l0.timeout.configured_ms"] == 300
    assert dict(attempts[1].attributes or {})["error.type"] == "ZeroOutputError"
    assert dict(attempts[0].attributes or {})["error.type"] == "InitialTokenTimeoutError"
    attrs = dict(session.attributes or {})
    assert attrs["l0.zero_output"] is True
    assert attrs["l0.outcome"] == "recovered"
    labels = {**BASE, "gen_ai.request.model": "gpt-4o"}
    assert otel.points("l0.zero_outputs") == [(labels, 1)]
    assert sum(v for _, v in otel.points("l0.retries")) == 2


async def test_abort(otel: Otel) -> None:
    async with ChaosServer(script=[Fault.stall_after(2, seconds=2)], text=TEXT) as server:
        client = l0.wrap(openai.AsyncOpenAI(base_url=server.base_url, api_key="test"))
        result = await client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True
        )

        async def consume() -> None:
            async for event in result:
                if event.is_token:
                    result.abort()

        with pytest.raises(l0.AbortedError):
            await consume()
        await client.close()
    (session,) = otel.named("chat gpt-4o")
    attrs = dict(session.attributes or {})
    assert attrs["l0.outcome"] == "aborted"
    assert session.status.status_code is not StatusCode.ERROR
    assert [e["l0.abort.source"] for e in events(session, "l0.abort")] == ["user"]
    (attempt,) = otel.children(session)
    assert dict(attempt.attributes or {})["l0.attempt.outcome"] == "aborted"
    labels = {**BASE, "gen_ai.request.model": "gpt-4o"}
    assert otel.points("l0.sessions") == [({**labels, "l0.outcome": "aborted"}, 1)]


async def test_race_children_nest_under_the_race_span(otel: Otel) -> None:
    scripts = {
        "slow-model": [Fault.slow_first_token(3)],
        "quick-model": [Fault.ok(text=TEXT)],
    }
    async with ChaosServer(model_scripts=scripts) as server:
        client = l0.wrap(openai.AsyncOpenAI(base_url=server.base_url, api_key="test"))

        def ask(model: str) -> Any:
            return lambda: client.chat.completions.create(
                model=model, messages=MESSAGES, stream=True
            )

        with trace.get_tracer("app").start_as_current_span("handle request"):
            result = await l0.race([ask("slow-model"), ask("quick-model")])
        await client.close()
    assert result.value == TEXT
    (root,) = otel.named("handle request")
    (race,) = otel.children(root)
    assert race.name == "l0.race"
    assert dict(race.attributes or {})["l0.group.task_count"] == 2
    assert race.status.status_code is StatusCode.OK
    assert [e.name for e in race.events if e.name == "l0.group_winner"] == ["l0.group_winner"]
    sessions = {s.name: s for s in otel.children(race)}
    assert set(sessions) == {"chat slow-model", "chat quick-model"}
    quick = dict(sessions["chat quick-model"].attributes or {})
    slow = dict(sessions["chat slow-model"].attributes or {})
    assert quick["l0.outcome"] == "success"
    assert slow["l0.outcome"] == "aborted"  # the loser is cancelled
    assert quick["l0.parent_id"] == dict(race.attributes or {})["l0.stream_id"]
