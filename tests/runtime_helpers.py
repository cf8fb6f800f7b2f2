"""Scripted fault streams shared by the runtime tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

TOKENS = ["The", " quick", " brown", " fox", " jumps", "."]
TEXT = "".join(TOKENS)


class StatusError(Exception):
    """An HTTP error the way SDKs carry it: a status and response headers."""

    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"HTTP {status}")
        self.status_code = status
        self.headers = headers or {}


@dataclass(frozen=True)
class Fault:
    """What one attempt does: ``ok``, ``raise`` at token k, ``stall`` at k, ``zero``, ``status``."""

    kind: str = "ok"
    at: int = 0
    error: BaseException | None = None
    status: int = 0


@dataclass
class Script:
    """Hands out one fault per call and records what each attempt did."""

    faults: list[Fault]
    tokens: Sequence[str] = tuple(TOKENS)
    calls: int = 0
    closed: int = 0
    finished: list[int] = field(default_factory=list)

    def factory(self) -> AsyncIterator[str]:
        fault = self.faults[self.calls] if self.calls < len(self.faults) else Fault()
        self.calls += 1
        return self._run(fault, self.calls)

    async def _run(self, fault: Fault, number: int) -> AsyncIterator[str]:
        try:
            if fault.kind == "status":
                raise StatusError(fault.status)
            if fault.kind == "zero":
                return
            for index, token in enumerate(self.tokens):
                if index == fault.at and fault.kind == "raise":
                    assert fault.error is not None
                    raise fault.error
                if index == fault.at and fault.kind == "stall":
                    await asyncio.sleep(3600)
                yield token
                await asyncio.sleep(0)
            self.finished.append(number)
        finally:
            self.closed += 1


async def collect(result: Any) -> list[Any]:
    """Every event of a result."""
    return [event async for event in result]


async def consume(result: Any) -> tuple[str, list[Any]]:
    """Iterate like a UI would: append tokens, take back what a RESET withdraws.

    Returns the text left on screen and every event seen.
    """
    shown = ""
    events = []
    async for event in result:
        events.append(event)
        if event.is_token:
            shown += event.text or ""
        elif event.is_reset:
            withdrawn = event.data["withdrawn"]
            assert shown.endswith(withdrawn)
            shown = shown[: len(shown) - len(withdrawn)]
    return shown, events


def read_all(chunks: Sequence[Any], reader: Any = None) -> list[Any]:
    """Every token and event a ``ChatChunkReader`` makes of ``chunks``, in order."""
    from collections import deque

    from l0.tool_calls import ChatChunkReader

    reader = reader or ChatChunkReader()
    out: deque[Any] = deque()
    items: list[Any] = []
    for chunk in chunks:
        text = reader.feed(chunk, out)
        if text is not None:
            items.append(text)
        items.extend(out)
        out.clear()
    reader.end(out)
    items.extend(out)
    return items


def cut_at(text: str, cuts: Sequence[int]) -> list[str]:
    """``text`` cut at the given offsets (sorted here; empty pieces kept)."""
    chunks, start = [], 0
    for cut in sorted(cuts):
        chunks.append(text[start:cut])
        start = cut
    chunks.append(text[start:])
    return chunks
