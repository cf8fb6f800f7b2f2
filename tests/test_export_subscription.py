"""``l0_event_types``: an exporter that names its event types receives only those."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import l0
from l0._dispatch import export_types


async def words(n: int) -> AsyncIterator[str]:
    for i in range(n):
        yield f"w{i} "


class Listener:
    def __init__(self) -> None:
        self.seen: list[str] = []

    @l0.hookimpl
    def l0_export_event(self, event: Any) -> None:
        self.seen.append(str(event.type))


class Ends:
    seen: list[str]

    @l0.hookimpl
    def l0_export_event(self, event: Any) -> None:
        self.seen.append(str(event.type))

    # The attribute lives on the function, as on a module-level hookimpl.
    l0_export_event.l0_event_types = frozenset({"SESSION_START", "SESSION_END"})  # type: ignore[attr-defined]


async def test_a_subscribed_exporter_gets_only_its_types() -> None:
    pm = l0.build_plugin_manager(allow=["guardrails"])
    ends = Ends()
    ends.seen = []
    pm.register(ends, name="ends")
    result = l0.run(lambda: words(200), guardrails="recommended", plugins=pm)
    assert (await result.read()).startswith("w0 ")
    assert ends.seen == ["SESSION_START", "SESSION_END"]


async def test_one_unsubscribed_exporter_means_every_event_is_built() -> None:
    pm = l0.build_plugin_manager(allow=["guardrails"])
    ends = Ends()
    ends.seen = []
    everything = Listener()
    pm.register(ends, name="ends")
    pm.register(everything, name="everything")
    result = l0.run(lambda: words(200), guardrails="recommended", plugins=pm)
    await result.read()
    assert ends.seen == ["SESSION_START", "SESSION_END"]  # still filtered for this one
    assert "GUARDRAIL_PHASE_START" in everything.seen
    assert "SESSION_SUMMARY" in everything.seen


def test_export_types_union() -> None:
    def a(event: Any) -> None: ...

    def b(event: Any) -> None: ...

    def c(event: Any) -> None: ...

    a.l0_event_types = {"SESSION_START"}  # type: ignore[attr-defined]
    b.l0_event_types = ["SESSION_END"]  # type: ignore[attr-defined]
    assert export_types((a, b)) == frozenset({"SESSION_START", "SESSION_END"})
    assert export_types((a, c)) is None
    assert export_types(()) == frozenset()
