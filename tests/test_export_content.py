"""What sessions hand exporters on request: content (``l0_wants_content``), the rules a failed
attempt tripped, and the exception a session gave up on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

import l0
from l0.events import REQUEST_META_KEY, ObservabilityEvent, wants_content
from l0.record import obs_event_dict

TYPES = frozenset({"SESSION_START", "RETRY_ATTEMPT", "RETRY_GIVE_UP", "SESSION_SUMMARY"})


async def words(text: str) -> AsyncIterator[str]:
    for word in text.split(" "):
        yield word + " "


class Exporter:
    def __init__(self) -> None:
        self.events: list[ObservabilityEvent] = []

    def of(self, kind: str) -> list[ObservabilityEvent]:
        return [e for e in self.events if e.type.value == kind]


def manager(exporter: Exporter, wants: Any) -> l0.L0PluginManager:
    pm = l0.build_plugin_manager(entry_points=False)

    class Plugin:
        @l0.hookimpl
        def l0_export_event(self, event: Any) -> None:
            exporter.events.append(event)

        l0_export_event.l0_event_types = TYPES  # type: ignore[attr-defined]
        if wants is not None:
            l0_export_event.l0_wants_content = wants  # type: ignore[attr-defined]

    pm.register(Plugin(), name="probe")
    return pm


REQUEST = {"provider": "test", "models": ["m"], "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize("wants", [None, False])
async def test_no_content_unless_asked(wants: Any) -> None:
    exporter = Exporter()
    pm = manager(exporter, wants)
    assert wants_content(pm) is False
    result = l0.run(lambda: words("a b c"), plugins=pm, meta={REQUEST_META_KEY: REQUEST})
    assert await result.read() == "a b c "
    (summary,) = exporter.of("SESSION_SUMMARY")
    assert summary["output_text"] is None
    # Messages a wrapper put in the request meta are dropped before any event is built.
    assert all("messages" not in e.meta[REQUEST_META_KEY] for e in exporter.events)
    assert exporter.events[0].meta[REQUEST_META_KEY]["models"] == ["m"]


async def test_content_when_a_probe_says_so_asked_once_per_session() -> None:
    calls: list[int] = []

    def probe() -> bool:
        calls.append(1)
        return True

    exporter = Exporter()
    pm = manager(exporter, probe)
    result = l0.run(lambda: words("a b c"), plugins=pm, meta={REQUEST_META_KEY: REQUEST})
    assert await result.read() == "a b c "
    assert len(calls) == 1
    (summary,) = exporter.of("SESSION_SUMMARY")
    assert summary["output_text"] == "a b c "
    assert exporter.events[0].meta[REQUEST_META_KEY]["messages"] == REQUEST["messages"]


async def test_a_raising_probe_counts_as_no(caplog: pytest.LogCaptureFixture) -> None:
    def probe() -> bool:
        raise RuntimeError("settings broke")

    exporter = Exporter()
    pm = manager(exporter, probe)
    result = l0.run(lambda: words("a b"), plugins=pm)
    assert await result.read() == "a b "
    (summary,) = exporter.of("SESSION_SUMMARY")
    assert summary["output_text"] is None
    assert "l0_wants_content probe raised" in caplog.text


def banned(ctx: Any) -> list[l0.GuardrailViolation]:
    if "bad" in ctx.content:
        return [l0.GuardrailViolation(rule="no-bad", message="said bad", severity="error")]
    return []


async def test_failure_events_name_the_rules_the_attempt_tripped() -> None:
    exporter = Exporter()
    pm = manager(exporter, None)
    texts = iter(["this is bad", "this is fine"])
    result = l0.run(
        lambda: words(next(texts)),
        plugins=pm,
        guardrails=[l0.GuardrailRule(name="no-bad", check=banned)],
        retry=l0.Retry(base_delay=0.0, max_delay=0.0),
    )
    assert await result.read() == "this is fine "
    (retry,) = exporter.of("RETRY_ATTEMPT")
    assert retry["violations"] == [{"rule": "no-bad", "severity": "error", "message": "said bad"}]
    assert retry["error_type"] == "l0.errors.GuardrailError"


async def test_give_up_hands_over_the_exception_object() -> None:
    class Broken(Exception):
        pass

    async def failing() -> AsyncIterator[str]:
        yield "x"
        raise Broken("nope")

    exporter = Exporter()
    pm = manager(exporter, None)
    result = l0.run(failing, plugins=pm, retry=l0.Retry(max_retries=0))
    with pytest.raises(l0.RetryExhaustedError) as raised:
        await result.read()
    (give_up,) = exporter.of("RETRY_GIVE_UP")
    error = give_up["exception"]
    assert error is raised.value.__cause__
    assert isinstance(error, Broken)
    assert error.__traceback__ is not None
    assert give_up["violations"] == []
    # Copies share the exception (many cannot be rebuilt from args); records keep its name.
    assert give_up.copy()["exception"] is error
    assert obs_event_dict(give_up)["exception"] == {"__error__": "Broken", "message": "nope"}
    assert give_up.to_dict()["exception"] is error
