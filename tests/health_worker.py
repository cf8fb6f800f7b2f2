"""A worker process for the multi-process health tests: runs sessions, prints a JSON summary.

Usage: ``python tests/health_worker.py BASE_URL MODEL FALLBACK SESSIONS SPACING RETRIES``. Health
settings and ``L0_REDIS_URL`` come from the environment, as in a real deployment.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from typing import Any

import openai

import l0
from l0.health import health_status


class _Count(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


async def main(
    base_url: str, model: str, fallback: str, sessions: int, spacing: float, retries: int
) -> None:
    counter = _Count()
    logging.getLogger("l0").addHandler(counter)
    sdk = openai.AsyncOpenAI(base_url=base_url, api_key="test", max_retries=0)
    client = l0.wrap(sdk, retry=l0.Retry(max_retries=retries, base_delay=0, max_delay=0))
    answered, failed = 0, 0
    events: dict[str, int] = {}

    def count(event: Any) -> None:
        name = event.type.value
        if name.startswith(("CIRCUIT", "RETRY_AFTER", "RETRY_BUDGET")):
            events[name] = events.get(name, 0) + 1

    started = time.monotonic()
    for _ in range(sessions):
        result = await client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            l0_options={"fallback_models": [fallback], "on_event": count},
        )
        try:
            if await result.read():
                answered += 1
        except l0.L0Error:
            failed += 1
        await result.wait_callbacks()
        await asyncio.sleep(spacing)
    await sdk.close()
    summary = {
        "answered": answered,
        "failed": failed,
        "seconds": round(time.monotonic() - started, 3),
        "events": events,
        "warnings": counter.messages,
        "store": (await health_status())["store"],
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    base, model, fallback, n, spacing, retries = sys.argv[1:7]
    asyncio.run(main(base, model, fallback, int(n), float(spacing), int(retries)))
