"""``l0-otel`` settings, content capture, isolation, nesting and tool spans (real SDK)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest
from opentelemetry import trace
from opentelemetry.trace import StatusCode

import l0
from l0.events import current_parent
from l0.testing import ChaosServer, Fault
from tests.otel.conftest import Otel

FAST = l0.Retry(base_delay=0.0, max_delay=0.0)


async def tokens(*parts: str) -> AsyncIterator[str]:
    for part in parts:
        yield part


async def test_bad_setting_warns_once_naming_it_and_streams_work(
    otel: Otel, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("L0_OTEL_ENABLED", "maybe")
    monkeypatch.setenv("L0_OTEL_COLOUR", "blue")
    with caplog.at_level(logging.WARNING, logger="l0.otel"):
        for _ in range(3):
            assert await l0.run(lambda: tokens("a", "b")).read() == "ab"
    warnings = [r.getMessage() for r in caplog.records if r.name == "l0.otel"]
    assert len([w for w in warnings if "otel.enabled = " in w]) == 1
    (bad,) = [w for w in warnings if "otel.enabled = 'maybe'" in w]
    assert "$L0_OTEL_ENABLED" in bad
    assert "expected true or false" in bad
    (unknown,) = [w for w in warnings if "otel.colour" in w]
    assert "$L0_OTEL_COLOUR" in unknown
    assert "otel.capture_content" in unknown  # lists what is allowed
    # The bad value falls back to the default (enabled): spans still appear.
    assert len(otel.named("chat")) == 3


async def test_disabled_in_pyproject(otel: Otel, tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.l0.otel]\nenabled = false\n")
    assert await l0.run(lambda: tokens("a")).read() == "a"
    assert otel.spans() == []


async def test_content_is_captured_only_on_opt_in(
    otel: Otel, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = [("get_weather", {"city": "Oslo"})]

    async def run() -> dict[str, Any]:
        async with ChaosServer(script=[Fault.tool_calls(calls)]) as server:
            client = l0.wrap(openai.AsyncOpenAI(base_url=server.base_url, api_key="t"))
            result = await client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            await result.read()
            (call,) = result.state.tool_calls
            result.tool_started(call["id"], call["name"])
            result.tool_finished(call["id"], result={"temp": 21})
            await client.close()
        (session,) = otel.named("chat gpt-4o")
        (requested,) = [e for e in session.events if e.name == "l0.tool_call"] or [
            e for a in otel.children(session) for e in a.events if e.name == "l0.tool_call"
        ]
        (tool,) = otel.named("execute_tool")
        assert tool.parent is not None
        assert tool.parent.span_id == session.context.span_id
        assert tool.name == "execute_tool get_weather"
        otel.spans_exporter.clear()
        return {**dict(requested.attributes or {}), **dict(tool.attributes or {})}

    plain = await run()
    assert plain["gen_ai.tool.name"] == "get_weather"
    assert "gen_ai.tool.call.arguments" not in plain
    assert "gen_ai.tool.call.result" not in plain
    monkeypatch.setenv("L0_OTEL_CAPTURE_CONTENT", "true")
    captured = await run()
    assert captured["gen_ai.tool.call.arguments"] == '{"city": "Oslo"}'
    assert captured["gen_ai.tool.call.result"] == '{"temp": 21}'


async def test_a_raising_exporter_is_isolated(otel: Otel) -> None:
    class Broken:
        @l0.hookimpl
        def l0_export_event(self, event: Any) -> None:
            raise RuntimeError("exporter bug")

    pm = l0.default_plugin_manager()
    pm.register(Broken(), name="broken")
    try:
        assert await l0.run(lambda: tokens("x", "y")).read() == "xy"
    finally:
        pm.unregister(name="broken")
    (session,) = otel.named("chat")
    assert dict(session.attributes or {})["l0.outcome"] == "success"


async def test_parent_id_nests_child_sessions_under_the_parent_span(otel: Otel) -> None:
    outer = l0.run(lambda: tokens("outer"))
    with trace.get_tracer("app").start_as_current_span("request"):
        assert await outer.read() == "outer"
        token = current_parent.set(outer.stream_id)
        try:
            children = [l0.run(lambda: tokens("child")) for _ in range(2)]
        finally:
            current_parent.reset(token)
        for child in children:
            assert await child.read() == "child"
    (request,) = otel.named("request")
    spans = [s for s in otel.named("chat")]
    parent = next(s for s in spans if dict(s.attributes or {})["l0.stream_id"] == outer.stream_id)
    assert parent.parent is not None
    assert parent.parent.span_id == request.context.span_id
    kids = [s for s in spans if s is not parent]
    assert len(kids) == 2
    for kid in kids:
        assert kid.parent is not None
        assert kid.parent.span_id == parent.context.span_id
        assert dict(kid.attributes or {})["l0.parent_id"] == outer.stream_id


async def test_plain_stream_without_model_is_named_by_operation(otel: Otel) -> None:
    async def broken() -> AsyncIterator[str]:
        yield "a"
        raise ConnectionError("gone")

    result = l0.run(broken, retry=l0.Retry(max_retries=0, base_delay=0.0, max_delay=0.0))
    with pytest.raises(l0.L0Error):
        await result.read()
    (session,) = otel.named("chat")
    assert session.name == "chat"
    assert session.status.status_code is StatusCode.ERROR
    attrs = dict(session.attributes or {})
    assert "gen_ai.provider.name" not in attrs  # a plain iterator names no provider
    assert attrs["l0.outcome"] == "error"
