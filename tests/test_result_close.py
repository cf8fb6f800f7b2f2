"""``Result.aclose()`` from another task while ``read()`` or iteration is running."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

import l0
from l0.errors import AbortedError

pytestmark = pytest.mark.usefixtures("isolated_config")


class Provider:
    """A stream that gives one token, then goes silent until closed."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.closed = False

    async def stream(self) -> AsyncIterator[str]:
        try:
            yield "first "
            self.started.set()
            await asyncio.sleep(60)
            yield "never"
        finally:
            self.closed = True


@pytest.mark.parametrize("consume", ["read", "iterate"])
async def test_aclose_from_another_task_stops_the_consumer_and_closes_the_provider(
    consume: str,
) -> None:
    provider = Provider()
    result = l0.run(provider.stream, timeout=l0.Timeout(initial_token=30, inter_token=30))

    async def consumer() -> str:
        if consume == "read":
            return await result.read()
        return "".join([e.text or "" async for e in result if e.is_token])

    task = asyncio.create_task(consumer())
    await asyncio.wait_for(provider.started.wait(), 5)
    await asyncio.wait_for(result.aclose(), 5)  # no "generator is already running"
    with pytest.raises(AbortedError):
        await asyncio.wait_for(task, 5)
    assert provider.closed
    assert result.state.content == "first "
