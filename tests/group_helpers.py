"""Waiting for observability events, which reach ``on_event`` off the caller's path."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from l0.events import ObservabilityEvent, ObservabilityEventType


async def eventually(check: Callable[[], bool], *, within: float = 10.0) -> None:
    """Wait until ``check()`` is true; fail after ``within`` seconds (a generous bound)."""
    async with asyncio.timeout(within):
        while not check():
            await asyncio.sleep(0.005)


def count(events: list[ObservabilityEvent], kind: ObservabilityEventType) -> int:
    """How many events of ``kind`` arrived."""
    return sum(1 for e in events if e.type is kind)
