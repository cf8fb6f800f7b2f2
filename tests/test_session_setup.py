"""What makes a session cheap to set up still sees every change (issue 11, "Session set-up").

The ``L0_*`` environment snapshot is reused only while the environment is the same; an
exporter's ``l0_active`` probe is asked by every session; a timer is made only for an attempt
that waits, and still fires on time.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import subprocess
import sys
import textwrap
import weakref
from collections.abc import AsyncIterator
from typing import Any

import pytest

import l0
from l0 import config
from l0.errors import InterTokenTimeoutError, RetryExhaustedError

pytestmark = pytest.mark.usefixtures("isolated_config")


async def three() -> AsyncIterator[str]:
    yield "a"
    yield "b"
    yield "c"


# --- the L0_* environment snapshot ------------------------------------------------------------


def test_env_snapshot_sees_every_change(monkeypatch: pytest.MonkeyPatch) -> None:
    assert config.load_config().get("retry", "max_retries") is None
    monkeypatch.setenv("L0_RETRY_MAX_RETRIES", "4")
    assert config.load_config().get("retry", "max_retries") == 4
    monkeypatch.setenv("L0_RETRY_MAX_RETRIES", "5")  # same names, another value
    assert config.load_config().get("retry", "max_retries") == 5
    monkeypatch.setenv("L0_UNRELATED_PATH_LIKE", "x")  # an unrelated variable comes and goes
    monkeypatch.delenv("L0_UNRELATED_PATH_LIKE")
    assert config.load_config().get("retry", "max_retries") == 5
    monkeypatch.delenv("L0_RETRY_MAX_RETRIES")
    assert config.load_config().get("retry", "max_retries") is None


def test_env_snapshot_sees_a_swap_that_keeps_the_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("L0_RETRY_MAX_RETRIES", "4")
    monkeypatch.setenv("L0_SWAP_PLACEHOLDER", "1")
    monkeypatch.delenv("L0_SWAP_PLACEHOLDER")
    before = len(os.environ)
    assert config.load_config().get("retry", "max_retries") == 4
    # One variable out, another in: as many variables as before, a different L0 set.
    monkeypatch.delenv("L0_RETRY_MAX_RETRIES")
    monkeypatch.setenv("L0_TIMEOUT_TOTAL", "12")
    assert len(os.environ) == before
    settings = config.load_config()
    assert settings.get("retry", "max_retries") is None
    assert settings.get("timeout", "total") == 12


def test_env_snapshot_sees_a_non_l0_name_replaced_by_an_l0_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NOT_L0_SETUP_TEST", "1")
    assert config._env_snapshot() == ()
    monkeypatch.delenv("NOT_L0_SETUP_TEST")
    monkeypatch.setenv("L0_RETRY_MAX_RETRIES", "2")
    assert config._env_snapshot() == (("L0_RETRY_MAX_RETRIES", "2"),)


def test_env_snapshot_is_reused_while_nothing_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("L0_RETRY_MAX_RETRIES", "3")
    first = config._env_snapshot()
    assert config._env_snapshot() is first
    assert config.load_config() is config.load_config()


# --- l0_active -------------------------------------------------------------------------------


class Probed:
    """An exporter that is active only while ``on`` is true."""

    def __init__(self) -> None:
        self.on = False
        self.asked = 0
        self.seen: list[str] = []

        def active() -> bool:
            self.asked += 1
            return self.on

        self.l0_export_event.__func__.l0_active = active  # type: ignore[attr-defined]

    @l0.hookimpl
    def l0_export_event(self, event: Any) -> None:
        self.seen.append(str(event.type))


class Always:
    def __init__(self) -> None:
        self.seen: list[str] = []

    @l0.hookimpl
    def l0_export_event(self, event: Any) -> None:
        self.seen.append(str(event.type))


def _manager(*plugins: object) -> Any:
    pm = l0.build_plugin_manager(entry_points=False)
    for i, plugin in enumerate(plugins):
        pm.register(plugin, name=f"exporter-{i}")
    return pm


async def test_an_inactive_exporter_gets_nothing_and_is_asked_again_next_session() -> None:
    probed = Probed()
    pm = _manager(probed)
    assert await l0.run(three, plugins=pm).read() == "abc"
    assert probed.seen == []
    assert probed.asked == 1
    probed.on = True
    assert await l0.run(three, plugins=pm).read() == "abc"
    assert probed.asked == 2
    assert probed.seen[0] == "SESSION_START"
    assert probed.seen[-1] == "SESSION_END"


async def test_an_inactive_exporter_does_not_silence_the_others() -> None:
    probed, always = Probed(), Always()
    pm = _manager(probed, always)
    events: list[Any] = []
    result = l0.run(three, plugins=pm, on_event=events.append)
    assert await result.read() == "abc"
    await result.wait_callbacks()
    assert probed.seen == []
    assert always.seen == [str(e.type) for e in events]
    assert "SESSION_SUMMARY" in always.seen


async def test_a_probe_that_raises_counts_as_active(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(Always):
        pass

    broken = Broken()

    def explode() -> bool:
        raise RuntimeError("probe failed")

    broken.l0_export_event.__func__.l0_active = explode  # type: ignore[attr-defined]
    try:
        with caplog.at_level(logging.ERROR, logger="l0"):
            assert await l0.run(three, plugins=_manager(broken)).read() == "abc"
    finally:
        del broken.l0_export_event.__func__.l0_active  # type: ignore[attr-defined]
    assert "SESSION_END" in broken.seen
    assert "l0_active probe raised" in caplog.text


def test_the_bundled_exporters_are_inactive_until_their_backend_is_set_up(
    tmp_path: Any,
) -> None:
    # Global providers and sentry_sdk.init cannot be undone: a fresh interpreter.
    script = textwrap.dedent(
        """
        import asyncio, os
        os.environ["L0_PLUGINS_DISABLE"] = "sample,example_guardrail"
        import l0, sentry_sdk
        from l0_otel.plugin import EXPORTER as OTEL
        from l0_sentry.plugin import EXPORTER as SENTRY
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from sentry_sdk.transport import Transport

        seen = {"otel": 0, "sentry": 0}
        for name, exporter in (("otel", OTEL), ("sentry", SENTRY)):
            export = exporter.export
            def counted(event, _export=export, _name=name):
                seen[_name] += 1
                _export(event)
            exporter.export = counted

        async def three():
            yield "a"; yield "b"; yield "c"

        async def once():
            assert await l0.run(three).read() == "abc"

        asyncio.run(once())
        print("unset", OTEL.active(), SENTRY.active(), seen["otel"], seen["sentry"])
        spans = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(spans))
        trace.set_tracer_provider(provider)
        asyncio.run(once())
        names = sorted({s.name.split()[0] for s in spans.get_finished_spans()})
        print("otel", OTEL.active(), SENTRY.active(), seen["otel"] > 0, seen["sentry"], names)

        class Keep(Transport):
            def capture_envelope(self, envelope):
                pass

        sentry_sdk.init(dsn="https://key@sentry.invalid/1", transport=Keep)
        asyncio.run(once())
        print("sentry", SENTRY.active(), seen["sentry"] > 0)
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("L0_", "OTEL_", "SENTRY_"))}
    done = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "unset False False 0 0"
    assert lines[1] == "otel True False True 0 ['chat', 'l0.attempt']"
    assert lines[2] == "sentry True True"


# --- timers ----------------------------------------------------------------------------------


async def test_a_stream_that_never_waits_leaves_no_timer_behind() -> None:
    loop = asyncio.get_running_loop()
    before = len(loop._scheduled)  # type: ignore[attr-defined]
    for _ in range(300):
        assert await l0.run(three).read() == "abc"
    assert len(loop._scheduled) == before  # type: ignore[attr-defined]
    await asyncio.sleep(0)  # the deferred arming runs and finds nothing to arm
    assert len(loop._scheduled) == before  # type: ignore[attr-defined]


async def test_a_finished_session_is_not_kept_alive_by_the_deferred_arming() -> None:
    # Sessions whose stream never waits finish before the loop runs the arming batch; they
    # must not stay referenced (with their state and text) until it does.
    gc.disable()  # freed by reference counting alone, not by a collection
    try:
        factories = []  # each session's own factory: it lives as long as its session
        for _ in range(50):

            def factory() -> AsyncIterator[str]:
                return three()

            assert await l0.run(factory).read() == "abc"
            factories.append(weakref.ref(factory))
        del factory
        assert [ref() for ref in factories] == [None] * 50
    finally:
        gc.enable()


async def test_a_slow_first_token_within_its_limit_outlives_the_shorter_gap_limit() -> None:
    async def slow_start() -> AsyncIterator[str]:
        await asyncio.sleep(0.6)  # longer than inter_token, well within initial_token
        yield "late"
        yield " but fine"

    timeout = l0.Timeout(initial_token=5.0, inter_token=0.2)
    result = l0.run(slow_start, timeout=timeout, retry=l0.Retry(attempts=0, max_retries=0))
    assert await result.read() == "late but fine"


async def test_a_gap_after_a_quick_first_token_still_times_out() -> None:
    async def stalls() -> AsyncIterator[str]:
        yield "first"
        await asyncio.sleep(30)
        yield "never"

    timeout = l0.Timeout(initial_token=20.0, inter_token=0.3)
    result = l0.run(stalls, timeout=timeout, retry=l0.Retry(attempts=0, max_retries=0))
    with pytest.raises(RetryExhaustedError):
        await asyncio.wait_for(result.read(), 15)
    assert [type(e.error) for e in result.errors] == [InterTokenTimeoutError]


async def test_many_waiting_sessions_each_time_out_on_their_own() -> None:
    async def silent() -> AsyncIterator[str]:
        await asyncio.sleep(30)
        yield "never"

    timeout = l0.Timeout(initial_token=0.3, inter_token=0.3)
    no_retry = l0.Retry(attempts=0, max_retries=0)

    async def one() -> str:
        try:
            await l0.run(silent, timeout=timeout, retry=no_retry).read()
        except Exception as exc:
            return type(exc).__name__
        return "finished"

    # More sessions than one arming batch holds: every one still gets its timer.
    outcomes = await asyncio.wait_for(asyncio.gather(*(one() for _ in range(300))), 20)
    assert set(outcomes) == {"RetryExhaustedError"}
