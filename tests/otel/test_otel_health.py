"""Provider health events reach OpenTelemetry as span events on the session's span."""

from __future__ import annotations

from collections.abc import AsyncIterator

import l0
from tests.otel.conftest import Otel


async def test_circuit_events_are_span_events(otel: Otel) -> None:
    async def down() -> AsyncIterator[str]:
        for _ in ():
            yield ""
        raise ConnectionResetError("down")

    async def spare() -> AsyncIterator[str]:
        yield "ok"

    health = l0.Health(failure_threshold=1, open_seconds=60)
    for _ in range(2):
        result = l0.run(
            down,
            fallbacks=[spare],
            provider=["otel-test|model", None],
            health=health,
            retry=l0.Retry(max_retries=0),
        )
        assert await result.read() == "ok"
    events = [(e.name, dict(e.attributes or {})) for s in otel.spans() for e in s.events]
    opened = [a for n, a in events if n == "l0.circuit_opened"]
    rejected = [a for n, a in events if n == "l0.circuit_rejected"]
    assert opened == [{"l0.provider.key": "otel-test|model"}]
    assert rejected == [{"l0.provider.key": "otel-test|model", "l0.health.action": "fallback"}]
