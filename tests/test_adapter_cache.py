"""Adapter detection is cached per stream type while every detector is by-type (issue 11)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import l0
from l0.plugins import L0PluginManager, build_plugin_manager, detects_by_type


async def three() -> AsyncIterator[str]:
    yield "a"
    yield "b"
    yield "c"


class Upper:
    """Claims async generators and upper-cases their tokens."""

    name = "upper"

    def detect(self, stream: Any) -> bool:
        return True

    async def wrap(self, stream: Any) -> AsyncIterator[str]:
        async for token in stream:
            yield token.upper()


class Counting:
    def __init__(self) -> None:
        self.calls = 0

    @l0.hookimpl
    @detects_by_type
    def l0_detect_adapter(self, stream: Any) -> l0.Adapter | None:
        self.calls += 1
        return None


class Claiming:
    def __init__(self) -> None:
        self.calls = 0

    @l0.hookimpl
    def l0_detect_adapter(self, stream: Any) -> l0.Adapter | None:
        self.calls += 1
        return Upper()


def manager() -> L0PluginManager:
    return build_plugin_manager(entry_points=False)


async def test_detection_runs_once_per_type_when_every_detector_is_by_type() -> None:
    pm = manager()
    counting = Counting()
    pm.register(counting, name="counting")
    for _ in range(3):
        assert await l0.run(three, plugins=pm).read() == "abc"
    assert counting.calls == 1


async def test_registering_a_plugin_invalidates_the_cache() -> None:
    pm = manager()
    counting = Counting()
    pm.register(counting, name="counting")
    assert await l0.run(three, plugins=pm).read() == "abc"
    claiming = Claiming()
    pm.register(claiming, name="claiming")
    # The new detector is asked (not the cached answer), and since it is not marked by-type
    # it is asked on every session.
    assert await l0.run(three, plugins=pm).read() == "ABC"
    assert await l0.run(three, plugins=pm).read() == "ABC"
    assert claiming.calls == 2
    # Unregistering it invalidates again: back to the builtin iterator adapter, cached.
    pm.unregister(name="claiming")
    before = counting.calls
    assert await l0.run(three, plugins=pm).read() == "abc"
    assert await l0.run(three, plugins=pm).read() == "abc"
    assert counting.calls == before + 1


async def test_the_cache_is_per_type() -> None:
    pm = manager()
    counting = Counting()
    pm.register(counting, name="counting")

    class Tokens:
        def __aiter__(self) -> AsyncIterator[str]:
            return three()

    assert await l0.run(three, plugins=pm).read() == "abc"
    assert await l0.run(Tokens, plugins=pm).read() == "abc"
    assert await l0.run(Tokens, plugins=pm).read() == "abc"
    assert counting.calls == 2
