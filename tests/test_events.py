"""The observability event bus: every type emitted, fields as documented, ids, copies."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import l0
from l0.events import (
    EVENT_DOCS,
    ObservabilityEvent,
    ObservabilityEventType,
    event_reference_markdown,
    uuid7,
)
from tests.lifecycle_scenarios import SCENARIOS, run_scenario

DOCS = Path(__file__).resolve().parent.parent / "docs" / "events.md"


def all_scenario_events() -> list[ObservabilityEvent]:
    events: list[ObservabilityEvent] = []
    for name in SCENARIOS:
        events.extend(run_scenario(name).events)
    return events


def test_every_event_has_exactly_its_documented_fields() -> None:
    for event in all_scenario_events():
        _, fields = EVENT_DOCS[event.type]
        assert sorted(event.data) == sorted(fields), event.type


def test_every_event_type_is_emitted_by_some_scenario() -> None:
    emitted = {event.type for event in all_scenario_events()}
    missing = set(ObservabilityEventType) - emitted
    assert not missing, f"dead event types: {sorted(t.value for t in missing)}"


def test_every_type_is_documented() -> None:
    assert set(EVENT_DOCS) == set(ObservabilityEventType)


def test_docs_event_table_is_generated_from_the_code() -> None:
    text = DOCS.read_text()
    start = text.index("<!-- events:start -->\n") + len("<!-- events:start -->\n")
    end = text.index("<!-- events:end -->")
    assert text[start:end] == event_reference_markdown(), (
        "docs/events.md is stale: replace the table with l0.events.event_reference_markdown()"
    )


def test_common_fields_ids_and_copies() -> None:
    seen: list[ObservabilityEvent] = []
    context = {"request_id": "r-1", "nested": {"k": [1]}}

    async def tokens() -> AsyncIterator[str]:
        yield "hi"

    async def main() -> None:
        pm = l0.build_plugin_manager(entry_points=False)
        first = l0.run(
            tokens, plugins=pm, context=context, meta={"user": "u"}, on_event=seen.append
        )
        await first.read()
        await first.wait_callbacks()
        second = l0.run(tokens, plugins=pm, session_id="s-9", on_event=seen.append)
        await second.read()
        await second.wait_callbacks()

    asyncio.run(main())
    firsts = [e for e in seen if e.session_id != "s-9"]
    seconds = [e for e in seen if e.session_id == "s-9"]
    assert firsts
    assert seconds
    assert len({e.stream_id for e in firsts}) == 1
    assert firsts[0].stream_id == firsts[0].session_id
    assert uuid.UUID(firsts[0].stream_id).version == 7
    assert firsts[0].stream_id < seconds[0].stream_id  # time-ordered
    assert all(e.context == context and e.meta == {"user": "u"} for e in firsts)
    assert [e.ts for e in firsts] == sorted(e.ts for e in firsts)
    flat = firsts[0].to_dict()
    assert flat["type"] == "SESSION_START"
    assert flat["context"] == context
    assert re.fullmatch(r"[0-9a-f-]{36}", flat["stream_id"])


def test_uuid7_is_monotonic() -> None:
    ids = [uuid7() for _ in range(2000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


async def test_sessions_created_under_a_parent_name_it_in_every_event() -> None:
    seen: list[ObservabilityEvent] = []

    async def tokens() -> AsyncIterator[str]:
        yield "hi"

    token = l0.events.current_parent.set("group-1")
    try:
        child = l0.run(tokens, on_event=seen.append)
    finally:
        l0.events.current_parent.reset(token)
    top = l0.run(tokens, on_event=seen.append)
    assert await child.read() == "hi"
    assert await top.read() == "hi"
    await child.wait_callbacks()
    await top.wait_callbacks()
    by_stream: dict[str, set[str | None]] = {}
    for event in seen:
        by_stream.setdefault(event.stream_id, set()).add(event.parent_id)
    assert sorted(by_stream.values(), key=str) == [{"group-1"}, {None}]
    child_event = next(e for e in seen if e.parent_id == "group-1")
    assert child_event.to_dict()["parent_id"] == "group-1"
    assert child_event.copy().parent_id == "group-1"
    assert "parent_id" not in next(e for e in seen if e.parent_id is None).to_dict()
