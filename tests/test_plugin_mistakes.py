"""Issue 8 item 8: plugin mistakes are refused at registration or named when they happen."""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator

import pytest

import l0
from l0.errors import L0PluginError
from l0.plugins import L0PluginManager

pytestmark = pytest.mark.usefixtures("isolated_config")

FAST = l0.Retry(base_delay=0.0, max_delay=0.0, max_retries=2)


@pytest.fixture
def pm() -> L0PluginManager:
    return l0.build_plugin_manager(entry_points=False)


def test_misspelt_in_process_hook_is_refused(pm: L0PluginManager) -> None:
    class Typo:
        @l0.hookimpl
        def l0_on_retyr(self, attempt: int, reason: str) -> None:
            pass

    before = pm.version
    with pytest.raises(L0PluginError) as info:
        pm.register(Typo(), name="typo")
    message = str(info.value)
    assert message.startswith(
        "plugin 'typo' from in-process: unknown hook 'l0_on_retyr'; did you mean 'l0_on_retry'?"
    )
    assert info.value.details == {"plugin": "typo", "hook": "l0_on_retyr"}
    # Nothing of it stays registered.
    assert pm.get_plugin("typo") is None
    assert "typo" not in {i.name for i in pm.list_plugins()}
    assert pm.version == before


def test_wrong_arguments_in_process_are_named(pm: L0PluginManager) -> None:
    class Args:
        @l0.hookimpl
        def l0_on_retry(self, attempt: int, why: str) -> None:
            pass

    with pytest.raises(L0PluginError, match=r"(?s)plugin 'args' from in-process is invalid.*why"):
        pm.register(Args(), name="args")


@pytest.mark.parametrize("hook", ["l0_retry_decision", "l0_on_retry"])
def test_async_hook_is_refused_at_registration(hook: str, pm: L0PluginManager) -> None:
    namespace: dict[str, object] = {"l0": l0}
    params = "error, category, state" if hook == "l0_retry_decision" else "attempt, reason"
    exec(  # a class with an async hook of the given name
        f"class Async:\n    @l0.hookimpl\n    async def {hook}(self, {params}):\n        pass\n",
        namespace,
    )
    plugin_class = namespace["Async"]
    assert isinstance(plugin_class, type)
    with pytest.raises(L0PluginError) as info:
        pm.register(plugin_class(), name="asyncy")
    assert str(info.value).startswith(f"plugin 'asyncy' from in-process: {hook} is `async def`")
    assert pm.get_plugin("asyncy") is None


def test_backoff_returning_a_non_number_names_plugin_and_hook(pm: L0PluginManager) -> None:
    class Soon:
        @l0.hookimpl
        def l0_backoff_delay(self, attempt: int) -> object:
            return "soon"

    pm.register(Soon(), name="soon-plugin")
    with pytest.raises(L0PluginError) as info:
        pm.hooks.backoff_delay(0, l0.Retry(), ValueError(), random.Random(0))
    assert str(info.value).startswith(
        "plugin 'soon-plugin' returned 'soon' from l0_backoff_delay; expected a number of "
        "seconds >= 0"
    )
    assert info.value.details["plugin"] == "soon-plugin"
    assert info.value.details["hook"] == "l0_backoff_delay"


async def test_bad_backoff_answer_ends_the_session_naming_the_plugin(pm: L0PluginManager) -> None:
    class Negative:
        @l0.hookimpl
        def l0_backoff_delay(self, attempt: int) -> float:
            return -1.0

    pm.register(Negative(), name="negative")
    calls = 0

    async def flaky() -> AsyncIterator[str]:
        nonlocal calls
        calls += 1
        yield "a"
        raise ConnectionResetError("dropped")

    with pytest.raises(L0PluginError, match=r"plugin 'negative' returned -1\.0 from l0_backoff"):
        await l0.run(flaky, plugins=pm, retry=FAST).read()
    assert calls == 1


class Boom:
    def __init__(self) -> None:
        self.calls = 0

    @l0.hookimpl
    def l0_export_event(self, event: l0.ObservabilityEvent) -> None:
        self.calls += 1
        raise RuntimeError("exporter bug")


async def test_raising_exporter_and_on_event_log_once_then_a_count(
    pm: L0PluginManager, caplog: pytest.LogCaptureFixture
) -> None:
    boom = Boom()
    pm.register(boom, name="boom")
    seen = 0

    def on_event(event: l0.ObservabilityEvent) -> None:
        nonlocal seen
        seen += 1
        raise ValueError("callback bug")

    async def tokens() -> AsyncIterator[str]:
        for word in ("a ", "b ", "c"):
            yield word

    caplog.set_level(logging.DEBUG, logger="l0")
    for _ in range(2):  # once per session, not once per process
        caplog.clear()
        result = l0.run(tokens, plugins=pm, on_event=on_event)
        assert await result.read() == "a b c"
        await result.wait_callbacks()
        tracebacks = [r for r in caplog.records if r.exc_info is not None]
        assert len(tracebacks) == 2, [r.getMessage() for r in tracebacks]
        assert any(
            "exporter bug" in r.getMessage() or "exporter" in r.getMessage() for r in tracebacks
        )
        counts = [r.getMessage() for r in caplog.records if "more time" in r.getMessage()]
        assert len(counts) == 2, counts
        assert boom.calls > 5
        assert seen > 5
        assert any(f"raised {boom.calls - 1} more time" in c for c in counts)
        boom.calls = seen = 0


async def test_raising_callback_without_observers_logs_once_then_a_count(
    pm: L0PluginManager, caplog: pytest.LogCaptureFixture
) -> None:
    attempts = 0

    async def flaky() -> AsyncIterator[str]:
        nonlocal attempts
        attempts += 1
        yield "a"
        if attempts < 4:
            raise ConnectionResetError("dropped")

    def on_retry(attempt: int, reason: str) -> None:
        raise ValueError("callback bug")

    caplog.set_level(logging.DEBUG, logger="l0")
    result = l0.run(flaky, plugins=pm, retry=FAST.with_changes(max_retries=5), on_retry=on_retry)
    assert await result.read() == "a"
    await result.wait_callbacks()
    assert len([r for r in caplog.records if r.exc_info is not None]) == 1
    counts = [r.getMessage() for r in caplog.records if "more time" in r.getMessage()]
    assert counts == ["l0: callback on_retry raised 2 more time(s) in this session"]
