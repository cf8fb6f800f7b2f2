"""Lifecycle callbacks and their l0_on_* hook mirrors: order, isolation, fire-and-forget."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

import l0
from l0.events import ObservabilityEvent
from l0.plugins import L0PluginManager
from tests.runtime_helpers import TEXT, TOKENS, Fault, Script

FAST = l0.Retry(base_delay=0.0, max_delay=0.0)


@pytest.fixture
def pm() -> L0PluginManager:
    return l0.build_plugin_manager(entry_points=False)


class Recorder:
    """Every callback, as (name, args), in arrival order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("on_"):
            raise AttributeError(name)

        def record(*args: Any) -> None:
            with self.lock:
                self.calls.append((name, args))

        return record

    def callbacks(self) -> dict[str, Any]:
        names = ["on_start", "on_complete", "on_error", "on_retry", "on_fallback"]
        names += ["on_timeout", "on_abort", "on_tool_call", "on_violation", "on_resume"]
        names += ["on_checkpoint", "on_drift"]
        return {name: getattr(self, name) for name in names}

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


async def tokens(items: list[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


async def test_order_for_a_retry(pm: L0PluginManager) -> None:
    rec = Recorder()
    script = Script([Fault("raise", 2, ConnectionResetError("reset"))])
    result = l0.run(script.factory, plugins=pm, retry=FAST, **rec.callbacks())
    assert await result.read() == TEXT
    await result.wait_callbacks()
    assert rec.names() == ["on_start", "on_error", "on_retry", "on_start", "on_complete"]
    assert rec.calls[0][1] == (1, False, False)
    error, will_retry, will_fallback = rec.calls[1][1]
    assert isinstance(error, ConnectionResetError)
    assert (will_retry, will_fallback) == (True, False)
    assert rec.calls[2][1] == (2, "network")
    assert rec.calls[3][1] == (2, True, False)
    (state,) = rec.calls[4][1]
    assert isinstance(state, l0.State)
    assert state.content == TEXT


async def test_order_for_a_fallback_and_a_timeout(pm: L0PluginManager) -> None:
    rec = Recorder()
    primary = Script([Fault("stall", 1)])
    result = l0.run(
        primary.factory,
        fallbacks=[lambda: tokens(TOKENS)],
        plugins=pm,
        retry=l0.Retry(max_retries=0),
        timeout=l0.Timeout(initial_token=1, inter_token=0.1),
        **rec.callbacks(),
    )
    assert await result.read() == TEXT
    await result.wait_callbacks()
    assert rec.names() == [
        "on_start",
        "on_timeout",
        "on_error",
        "on_fallback",
        "on_start",
        "on_complete",
    ]
    assert rec.calls[1][1][0] == "inter"
    assert rec.calls[2][1][1:] == (False, True)
    assert rec.calls[3][1][0] == 1
    assert rec.calls[4][1] == (2, False, True)


async def test_order_for_give_up_and_abort(pm: L0PluginManager) -> None:
    rec = Recorder()
    script = Script([Fault("raise", 0, ConnectionResetError("reset"))] * 2)
    with pytest.raises(l0.RetryExhaustedError):
        await l0.run(
            script.factory,
            plugins=pm,
            retry=l0.Retry(max_retries=1, base_delay=0),
            **rec.callbacks(),
        ).read()
    rec2 = Recorder()
    stalled = l0.run(Script([Fault("stall", 1)]).factory, plugins=pm, **rec2.callbacks())
    task = asyncio.create_task(stalled.read())
    await asyncio.sleep(0.05)
    stalled.abort()
    with pytest.raises(l0.AbortedError):
        await task
    await stalled.wait_callbacks()
    await asyncio.sleep(0.05)
    assert rec.names() == ["on_start", "on_error", "on_retry", "on_start", "on_error"]
    assert rec.calls[-1][1][1:] == (False, False)
    assert rec2.names() == ["on_start", "on_abort"]
    assert rec2.calls[-1][1] == (1, 3)


async def test_sync_and_async_callbacks_both_run(pm: L0PluginManager) -> None:
    seen: list[str] = []

    async def on_start(attempt: int, is_retry: bool, is_fallback: bool) -> None:
        await asyncio.sleep(0)
        seen.append(f"async start {attempt}")

    def on_complete(state: l0.State) -> None:
        seen.append(f"sync complete {state.token_count}")

    result = l0.run(lambda: tokens(TOKENS), plugins=pm, on_start=on_start, on_complete=on_complete)
    await result.read()
    await result.wait_callbacks()
    assert seen == ["async start 1", f"sync complete {len(TOKENS)}"]


async def test_raising_callback_is_logged_and_ignored(
    pm: L0PluginManager, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(*args: Any) -> None:
        raise RuntimeError("callback bug")

    rec = Recorder()
    with caplog.at_level(logging.ERROR, logger="l0.callbacks"):
        result = l0.run(
            lambda: tokens(TOKENS), plugins=pm, on_start=boom, on_complete=rec.on_complete
        )
        assert await result.read() == TEXT
        await result.wait_callbacks()
    assert "callback on_start raised" in caplog.text
    assert rec.names() == ["on_complete"]


async def test_slow_callbacks_never_delay_tokens(pm: L0PluginManager) -> None:
    def sleepy_sync(*args: Any) -> None:
        time.sleep(1.0)

    async def sleepy_async(*args: Any) -> None:
        await asyncio.sleep(1.0)

    async def paced() -> AsyncIterator[str]:
        for token in TOKENS:
            await asyncio.sleep(0.005)
            yield token

    for slow in (sleepy_sync, sleepy_async):
        result = l0.run(paced, plugins=pm, on_start=slow, on_complete=slow)
        start = time.monotonic()
        arrivals = [time.monotonic() - start async for _ in result]
        assert arrivals[-1] < 0.1
        assert result.state.content == TEXT


async def test_callbacks_receive_copies(pm: L0PluginManager) -> None:
    context = {"request": {"id": "r1"}}
    meta = {"user": "u1"}
    contexts: list[dict[str, Any]] = []

    def mutate_state(state: l0.State) -> None:
        state.tool_calls.append({"name": "injected"})
        state._parts.append("injected")
        state.violations.append(l0.GuardrailViolation("x", "y"))

    def mutate_event(event: ObservabilityEvent) -> None:
        event.context["request"]["id"] = "changed"
        contexts.append({"id": event.context["request"]["id"]})

    result = l0.run(
        lambda: tokens(TOKENS),
        plugins=pm,
        context=context,
        meta=meta,
        on_complete=mutate_state,
        on_event=mutate_event,
    )
    assert await result.read() == TEXT
    await result.wait_callbacks()
    assert result.state.content == TEXT
    assert result.state.tool_calls == []
    assert result.state.violations == []
    assert context == {"request": {"id": "r1"}}
    assert len(contexts) > 3
    assert all(c == {"id": "changed"} for c in contexts)  # each event got a fresh copy


class HookMirror:
    """An in-process plugin implementing every lifecycle hook."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    @l0.hookimpl
    def l0_on_start(self, attempt: int, is_retry: bool, is_fallback: bool) -> None:
        self.calls.append(("start", {"attempt": attempt, "is_retry": is_retry}))

    @l0.hookimpl
    def l0_on_error(self, error: BaseException, will_retry: bool, will_fallback: bool) -> None:
        self.calls.append(("error", {"will_retry": will_retry}))

    @l0.hookimpl
    def l0_on_retry(self, attempt: int, reason: str) -> None:
        self.calls.append(("retry", {"attempt": attempt, "reason": reason}))

    @l0.hookimpl
    def l0_on_complete(self, state: l0.State) -> None:
        self.calls.append(("complete", {"content": state.content}))

    @l0.hookimpl
    def l0_on_timeout(self, timeout_type: str, elapsed_ms: int) -> None:
        self.calls.append(("timeout", {"type": timeout_type}))

    @l0.hookimpl
    def l0_on_tool_call(self, tool_name: str, tool_call_id: str, args: dict[str, Any]) -> None:
        self.calls.append(("tool", {"name": tool_name, "args": args}))

    @l0.hookimpl
    def l0_export_event(self, event: ObservabilityEvent) -> None:
        self.calls.append(("event", {"type": event.type.value}))


async def test_lifecycle_hooks_mirror_callbacks(pm: L0PluginManager) -> None:
    mirror = HookMirror()
    pm.register(mirror, name="mirror")
    script = Script([Fault("stall", 1)])
    call = l0.Event(l0.EventType.TOOL_CALL, data={"id": "t", "name": "f", "arguments": '{"a": 1}'})

    def factory() -> AsyncIterator[Any]:
        return script.factory() if script.calls == 0 else tokens([call, *TOKENS])

    result = l0.run(
        factory, plugins=pm, retry=FAST, timeout=l0.Timeout(initial_token=1, inter_token=0.1)
    )
    assert await result.read() == TEXT
    await result.wait_callbacks()
    lifecycle = [(n, d) for n, d in mirror.calls if n != "event"]
    assert lifecycle == [
        ("start", {"attempt": 1, "is_retry": False}),
        ("timeout", {"type": "inter"}),
        ("error", {"will_retry": True}),
        ("retry", {"attempt": 2, "reason": "network"}),
        ("start", {"attempt": 2, "is_retry": True}),
        ("tool", {"name": "f", "args": {"a": 1}}),
        ("complete", {"content": TEXT}),
    ]
    types = [d["type"] for n, d in mirror.calls if n == "event"]
    assert types[0] == "SESSION_START"
    assert types[-1] == "SESSION_END"
    assert "TIMEOUT_TRIGGERED" in types
    assert "RETRY_ATTEMPT" in types


async def test_a_raising_exporter_does_not_break_the_stream(
    pm: L0PluginManager, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        @l0.hookimpl
        def l0_export_event(self, event: ObservabilityEvent) -> None:
            raise RuntimeError("exporter down")

    pm.register(Broken(), name="broken")
    with caplog.at_level(logging.ERROR, logger="l0"):
        assert await l0.run(lambda: tokens(TOKENS), plugins=pm).read() == TEXT
    assert "exporter" in caplog.text


async def test_callbacks_still_run_when_the_loop_shuts_down() -> None:
    seen: list[int] = []

    async def main() -> None:
        pm = l0.build_plugin_manager(entry_points=False)
        result = l0.run(
            lambda: tokens(TOKENS), plugins=pm, on_complete=lambda s: seen.append(s.token_count)
        )
        await result.read()

    def run_in_thread() -> None:
        asyncio.run(main())

    thread = threading.Thread(target=run_in_thread)
    thread.start()
    thread.join()
    assert seen == [len(TOKENS)]
