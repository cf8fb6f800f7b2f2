"""l0.plugins: loading, listing, disabling, overriding builtins in-process, failing plugins."""

from __future__ import annotations

import logging
import os
import random
import sys
from collections.abc import AsyncIterator, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

import l0
from l0.errors import AdapterNotFoundError, ConfigError, L0PluginError
from l0.events import ObservabilityEventType
from l0.plugins import BUILTINS, L0PluginManager, PluginInfo, build_plugin_manager
from tests.runtime_helpers import TEXT, TOKENS, Fault, Script

KERNEL_VERSION = metadata.version("l0")


@pytest.fixture(autouse=True)
def no_l0_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("L0_"):
            monkeypatch.delenv(name)


@pytest.fixture
def pm() -> L0PluginManager:
    return build_plugin_manager(entry_points=False)


async def tokens(items: list[str]) -> AsyncIterator[str]:
    for item in items:
        yield item


# --- loading and listing -----------------------------------------------------------------------


def test_builtins_are_listed_first_with_the_kernel_version(pm: L0PluginManager) -> None:
    infos = pm.list_plugins()
    assert [i.name for i in infos] == sorted(BUILTINS)
    for info in infos:
        assert info.builtin
        assert info.origin == "builtin"
        assert info.version == KERNEL_VERSION
    hooks = {i.name: i.hooks for i in infos}
    assert hooks == {
        "backoff": ("l0_backoff_delay",),
        "categorize": ("l0_categorize_error",),
        "iter_adapter": ("l0_detect_adapter",),
        "policies": ("l0_register_retry_policies",),
        "retry": ("l0_retry_decision",),
    }


def test_builtin_decisions_are_trylast(pm: L0PluginManager) -> None:
    for hook in ("l0_detect_adapter", "l0_categorize_error", "l0_retry_decision"):
        impls = getattr(pm.hook, hook).get_hookimpls()
        assert all(i.trylast for i in impls if i.plugin_name in BUILTINS)


class Recorder:
    """An in-process plugin with a broadcast hook."""

    def __init__(self) -> None:
        self.retries: list[tuple[int, str]] = []

    @l0.hookimpl
    def l0_on_retry(self, attempt: int, reason: str) -> None:
        self.retries.append((attempt, reason))

    def helper_not_a_hook(self) -> None:
        """Names without the l0_ prefix are ignored."""


def test_in_process_plugins_are_listed_after_builtins(pm: L0PluginManager) -> None:
    version = pm.version
    pm.register(Recorder(), name="recorder")
    assert pm.version == version + 1
    last = pm.list_plugins()[-1]
    assert last == PluginInfo(
        name="recorder", origin="in-process", version=None, hooks=("l0_on_retry",), builtin=False
    )


def test_entry_point_plugins_are_listed_with_their_distribution() -> None:
    manager = build_plugin_manager()
    found = {ep.name: ep for ep in metadata.entry_points(group="l0")}
    infos = {i.name: i for i in manager.list_plugins()}
    for name, ep in found.items():
        assert ep.dist is not None
        assert infos[name].origin == ep.dist.name
        assert infos[name].version == ep.dist.version
        assert not infos[name].builtin
        assert infos[name].hooks
    names = [i.name for i in manager.list_plugins() if not i.builtin]
    assert names == sorted(names)


def make_module(tmp_path: Path, name: str, source: str) -> None:
    (tmp_path / f"{name}.py").write_text(source)


@pytest.fixture
def fake_entry_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[metadata.EntryPoint]]:
    """Entry points of the group ``l0`` pointing at modules written into ``tmp_path``."""
    points: list[metadata.EntryPoint] = []
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(metadata, "entry_points", lambda group: points if group == "l0" else [])
    yield points
    for point in points:
        sys.modules.pop(point.value.split(":")[0], None)


def test_entry_points_load_sorted_by_name(
    tmp_path: Path, fake_entry_points: list[metadata.EntryPoint]
) -> None:
    for name in ("zeta_plugin", "alpha_plugin"):
        make_module(
            tmp_path,
            name,
            "import l0\n@l0.hookimpl\ndef l0_on_start(attempt, is_retry, is_fallback):\n    pass\n",
        )
        fake_entry_points.append(metadata.EntryPoint(name[:4], name, "l0"))
    manager = build_plugin_manager()
    extra = [i for i in manager.list_plugins() if not i.builtin]
    assert [(i.name, i.origin) for i in extra] == [("alph", "unknown"), ("zeta", "unknown")]
    impls = manager.hook.l0_on_start.get_hookimpls()
    assert [i.plugin_name for i in impls] == ["alph", "zeta"]  # registration order
    assert [i.name for i in build_plugin_manager(allow=["zeta"]).list_plugins()][-1] == "zeta"
    assert "zeta" not in {i.name for i in build_plugin_manager(blocked=["zeta"]).list_plugins()}


def test_a_plugin_that_fails_to_import_is_loud(
    tmp_path: Path, fake_entry_points: list[metadata.EntryPoint]
) -> None:
    make_module(tmp_path, "broken_plugin", "raise ImportError('needs foo; pip install foo')\n")
    fake_entry_points.append(metadata.EntryPoint("broken", "broken_plugin", "l0"))
    with pytest.raises(L0PluginError) as info:
        build_plugin_manager()
    message = str(info.value)
    assert "plugin 'broken' from unknown failed to import" in message
    assert "pip install foo" in message
    assert "L0_DISABLE_PLUGINS=broken" in message
    assert isinstance(info.value.__cause__, ImportError)
    # ... and disabling it by name makes the rest work.
    assert "broken" not in {i.name for i in build_plugin_manager(blocked=["broken"]).list_plugins()}


def test_a_misspelt_hook_is_named(
    tmp_path: Path, fake_entry_points: list[metadata.EntryPoint]
) -> None:
    make_module(tmp_path, "typo_plugin", "import l0\n@l0.hookimpl\ndef l0_on_strat():\n    pass\n")
    fake_entry_points.append(metadata.EntryPoint("typo", "typo_plugin", "l0"))
    with pytest.raises(
        L0PluginError, match=r"plugin 'typo' from unknown: unknown hook 'l0_on_strat'"
    ):
        build_plugin_manager()


def test_a_hook_with_wrong_arguments_is_named(
    tmp_path: Path, fake_entry_points: list[metadata.EntryPoint]
) -> None:
    make_module(
        tmp_path,
        "args_plugin",
        "import l0\n@l0.hookimpl\ndef l0_on_retry(attempt, why):\n    pass\n",
    )
    fake_entry_points.append(metadata.EntryPoint("args", "args_plugin", "l0"))
    with pytest.raises(L0PluginError, match=r"(?s)plugin 'args' from unknown is invalid.*why"):
        build_plugin_manager()


# --- disabling ---------------------------------------------------------------------------------


def test_disable_by_name(pm: L0PluginManager) -> None:
    recorder = Recorder()
    pm.register(recorder, name="recorder")
    pm.disable("recorder")
    assert "recorder" not in {i.name for i in pm.list_plugins()}
    assert pm.is_blocked("recorder")
    assert not pm.load_plugin("recorder", lambda: recorder, origin="somewhere")
    pm.disable("never-loaded")  # blocking an absent name is fine (it may load later)
    assert pm.is_blocked("never-loaded")


@pytest.mark.parametrize("name", BUILTINS)
def test_builtins_are_essential(name: str, pm: L0PluginManager) -> None:
    with pytest.raises(ConfigError, match=rf"'{name}' is builtin and essential"):
        pm.disable(name)
    with pytest.raises(ConfigError, match=rf"plugins\.disable contains '{name}'"):
        build_plugin_manager(entry_points=False, blocked=[name])


def test_disable_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("L0_DISABLE_PLUGINS", "openai, litellm")
    names = {i.name for i in build_plugin_manager().list_plugins()}
    assert not names & {"openai", "litellm"}
    monkeypatch.setenv("L0_DISABLE_PLUGINS", "backoff")
    with pytest.raises(ConfigError, match="essential"):
        build_plugin_manager()


def test_load_allowlist_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("L0_LOAD_PLUGINS", "")
    assert {i.name for i in build_plugin_manager().list_plugins()} == set(BUILTINS)


def test_a_decision_hook_left_without_answer_fails(pm: L0PluginManager) -> None:
    pm.unregister(name="retry")
    with pytest.raises(L0PluginError, match="no plugin implements l0_retry_decision"):
        pm.require_answers("l0_retry_decision")


# --- tracing -----------------------------------------------------------------------------------


def test_tracing_logs_hook_calls(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("L0_TRACE_PLUGINS", "1")
    manager = build_plugin_manager(entry_points=False)
    with caplog.at_level(logging.DEBUG, logger="l0.plugins"):
        manager.hooks.categorize_error(ConnectionResetError())
    assert any("l0_categorize_error" in r.getMessage() for r in caplog.records)
    quiet = build_plugin_manager(entry_points=False, trace=False)
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="l0.plugins"):
        quiet.hooks.categorize_error(ConnectionResetError())
    assert not caplog.records


# --- overriding the builtins in-process, proven in a real run -----------------------------------


class QuotaError(Exception):
    """An SDK error the builtin rules would call a model error (and retry)."""


class Overrides:
    def __init__(self) -> None:
        self.backoff_calls: list[int] = []

    @l0.hookimpl
    def l0_categorize_error(self, error: BaseException) -> l0.ErrorCategory | None:
        return l0.ErrorCategory.FATAL if isinstance(error, QuotaError) else None

    @l0.hookimpl
    def l0_retry_decision(
        self, error: BaseException, category: l0.ErrorCategory, state: l0.State
    ) -> l0.RetryDecision | None:
        if isinstance(error, RuntimeError) and "flaky" in str(error):
            # Builtin: a model error, counted toward attempts. Here: free.
            return l0.RetryDecision(retry=True, counts_toward_attempts=False, reason="flaky")
        if isinstance(error, ConnectionRefusedError):
            return l0.RetryDecision(retry=False, reason="refused: the server is down for good")
        return None

    @l0.hookimpl
    def l0_backoff_delay(
        self, attempt: int, policy: Any, error: BaseException, rng: random.Random
    ) -> float | None:
        self.backoff_calls.append(attempt)
        return 0.001 * (attempt + 1) if isinstance(error, RuntimeError) else None


@pytest.fixture
def overridden(pm: L0PluginManager) -> Overrides:
    plugin = Overrides()
    pm.register(plugin, name="overrides")
    return plugin


def delays(events: list[Any]) -> list[float]:
    return [e["delay_ms"] for e in events if e.type is ObservabilityEventType.RETRY_ATTEMPT]


async def test_plugin_categorisation_wins(pm: L0PluginManager, overridden: Overrides) -> None:
    assert l0.categorize_error(QuotaError("quota"), plugins=pm) is l0.ErrorCategory.FATAL
    assert l0.categorize_error(RuntimeError("x"), plugins=pm) is l0.ErrorCategory.MODEL
    script = Script([Fault("raise", 1, QuotaError("out of quota"))] * 3)
    with pytest.raises(QuotaError) as info:
        await l0.run(script.factory, plugins=pm, retry=l0.Retry(base_delay=0)).read()
    assert script.calls == 1
    assert info.value.l0.category is l0.ErrorCategory.FATAL  # type: ignore[attr-defined]


async def test_plugin_retry_decision_and_backoff_win(
    pm: L0PluginManager, overridden: Overrides
) -> None:
    script = Script([Fault("raise", 1, RuntimeError("flaky model"))] * 3)
    events: list[Any] = []
    result = l0.run(
        script.factory,
        plugins=pm,
        retry=l0.Retry(attempts=0, base_delay=5.0),  # the builtins would neither retry nor be fast
        on_event=events.append,
    )
    assert await result.read() == TEXT
    await result.wait_callbacks()
    assert script.calls == 4
    assert result.state.network_retry_count == 3
    assert result.state.model_retry_count == 0
    assert delays(events) == pytest.approx([1.0, 2.0, 3.0])
    assert overridden.backoff_calls == [0, 1, 2]


async def test_plugin_refusal_is_the_reason(pm: L0PluginManager, overridden: Overrides) -> None:
    script = Script([Fault("raise", 1, ConnectionRefusedError("refused"))] * 3)
    with pytest.raises(l0.RetryExhaustedError, match="the server is down for good"):
        await l0.run(script.factory, plugins=pm, retry=l0.Retry(base_delay=0)).read()
    assert script.calls == 1


async def test_none_defers_to_the_builtins(pm: L0PluginManager, overridden: Overrides) -> None:
    script = Script([Fault("raise", 1, ConnectionResetError("reset"))] * 2)
    events: list[Any] = []
    result = l0.run(
        script.factory,
        plugins=pm,
        retry=l0.Retry(base_delay=0.002, strategy=l0.BackoffStrategy.FIXED),
        on_event=events.append,
    )
    assert await result.read() == TEXT
    await result.wait_callbacks()
    assert delays(events) == [2.0, 2.0]


async def test_newest_plugin_is_asked_first(pm: L0PluginManager) -> None:
    class Says:
        def __init__(self, category: l0.ErrorCategory) -> None:
            self.category = category

        @l0.hookimpl
        def l0_categorize_error(self, error: BaseException) -> l0.ErrorCategory | None:
            return self.category

    pm.register(Says(l0.ErrorCategory.MODEL), name="older")
    pm.register(Says(l0.ErrorCategory.CONTENT), name="newer")
    assert l0.categorize_error(ValueError(), plugins=pm) is l0.ErrorCategory.CONTENT
    pm.unregister(name="newer")
    assert l0.categorize_error(ValueError(), plugins=pm) is l0.ErrorCategory.MODEL


async def test_lifecycle_hook_of_an_in_process_plugin(pm: L0PluginManager) -> None:
    recorder = Recorder()
    pm.register(recorder, name="recorder")
    script = Script([Fault("raise", 1, ConnectionResetError("reset"))])
    result = l0.run(script.factory, plugins=pm, retry=l0.Retry(base_delay=0))
    assert await result.read() == TEXT
    await result.wait_callbacks()
    assert recorder.retries == [(2, "network")]


# --- plugins that raise --------------------------------------------------------------------


class Raises:
    """Every decision hook raises; the kernel must name this plugin and carry on sensibly."""

    @l0.hookimpl
    def l0_categorize_error(self, error: BaseException) -> l0.ErrorCategory | None:
        raise KeyError("categorize bug")

    @l0.hookimpl
    def l0_retry_decision(
        self, error: BaseException, category: l0.ErrorCategory, state: l0.State
    ) -> l0.RetryDecision | None:
        raise RuntimeError("decision bug")

    @l0.hookimpl
    def l0_backoff_delay(
        self, attempt: int, policy: Any, error: BaseException, rng: random.Random
    ) -> float | None:
        raise ZeroDivisionError("backoff bug")


def test_facade_names_the_raising_plugin(pm: L0PluginManager) -> None:
    pm.register(Raises(), name="buggy")
    with pytest.raises(L0PluginError) as info:
        pm.hooks.categorize_error(ValueError())
    assert str(info.value).startswith("plugin 'buggy' raised in l0_categorize_error: KeyError")
    assert info.value.details == {"plugin": "buggy", "hook": "l0_categorize_error"}
    assert isinstance(info.value.__cause__, KeyError)
    with pytest.raises(L0PluginError, match="'buggy' raised in l0_backoff_delay"):
        pm.hooks.backoff_delay(0, l0.Retry(), ValueError(), random.Random())


async def test_raising_categorizer_falls_back_to_builtin_rules(
    pm: L0PluginManager, caplog: pytest.LogCaptureFixture
) -> None:
    class BadCategorizer:
        @l0.hookimpl
        def l0_categorize_error(self, error: BaseException) -> l0.ErrorCategory | None:
            raise KeyError("categorize bug")

    pm.register(BadCategorizer(), name="bad-categorizer")
    with caplog.at_level(logging.ERROR, logger="l0"):
        category = l0.categorize_error(ConnectionResetError(), plugins=pm)
    assert category is l0.ErrorCategory.NETWORK
    assert "bad-categorizer" in caplog.text
    script = Script([Fault("raise", 1, ConnectionResetError("reset"))])
    assert await l0.run(script.factory, plugins=pm, retry=l0.Retry(base_delay=0)).read() == TEXT
    assert script.calls == 2


async def test_raising_retry_decision_stops_and_names_the_plugin(
    pm: L0PluginManager, caplog: pytest.LogCaptureFixture
) -> None:
    pm.register(Raises(), name="buggy")
    script = Script([Fault("raise", 1, ConnectionResetError("reset"))] * 3)
    with (
        caplog.at_level(logging.ERROR, logger="l0"),
        pytest.raises(l0.RetryExhaustedError) as info,
    ):
        await l0.run(script.factory, plugins=pm, retry=l0.Retry(base_delay=0)).read()
    assert script.calls == 1
    assert "plugin 'buggy' raised in l0_retry_decision: RuntimeError: decision bug" in str(
        info.value
    )
    assert isinstance(info.value.last_error, ConnectionResetError)  # the real error is kept


async def test_raising_backoff_uses_the_builtin_formula(
    pm: L0PluginManager, caplog: pytest.LogCaptureFixture
) -> None:
    class BadBackoff:
        @l0.hookimpl
        def l0_backoff_delay(
            self, attempt: int, policy: Any, error: BaseException, rng: random.Random
        ) -> float | None:
            raise ZeroDivisionError("backoff bug")

    pm.register(BadBackoff(), name="bad-backoff")
    script = Script([Fault("raise", 1, ConnectionResetError("reset"))])
    events: list[Any] = []
    result = l0.run(
        script.factory,
        plugins=pm,
        retry=l0.Retry(base_delay=0.001, strategy="fixed"),
        on_event=events.append,
    )
    with caplog.at_level(logging.ERROR, logger="l0"):
        assert await result.read() == TEXT
    await result.wait_callbacks()
    assert delays(events) == [1.0]
    assert "bad-backoff" in caplog.text


async def test_raising_adapter_detection_is_a_plugin_error_not_retried(
    pm: L0PluginManager,
) -> None:
    class BadAdapter:
        @l0.hookimpl
        def l0_detect_adapter(self, stream: Any) -> l0.Adapter | None:
            raise RuntimeError("adapter bug")

    pm.register(BadAdapter(), name="bad-adapter")
    calls = 0

    def factory() -> AsyncIterator[str]:
        nonlocal calls
        calls += 1
        return tokens(TOKENS)

    with pytest.raises(L0PluginError, match=r"plugin 'bad-adapter' raised in l0_detect_adapter"):
        await l0.run(factory, plugins=pm, retry=l0.Retry(base_delay=0)).read()
    assert calls == 1


def test_adapter_returning_none_for_unknown_streams(pm: L0PluginManager) -> None:
    assert pm.hooks.detect_adapter(object()) is None
    assert pm.hooks.detect_adapter(tokens([])) is not None


async def test_unknown_stream_lists_the_adapters_tried(pm: L0PluginManager) -> None:
    with pytest.raises(AdapterNotFoundError, match=r"tried: iter_adapter \(plugin\)"):
        await l0.run(lambda: 42, plugins=pm).read()


# --- retry policy registration -------------------------------------------------------------


def test_policies_are_collected_and_cached(pm: L0PluginManager) -> None:
    first = pm.retry_policies()
    assert set(first) == {s.value for s in l0.BackoffStrategy} | {"none"}
    assert pm.retry_policies() is first

    class Extra:
        @l0.hookimpl
        def l0_register_retry_policies(self) -> Iterator[l0.RetryPolicySpec]:
            yield l0.RetryPolicySpec("extra", lambda settings: l0.Retry(**settings))

    pm.register(Extra(), name="extra-plugin")
    assert pm.retry_policies()["extra"][1] == "extra-plugin"
    assert "extra (in-process)" in pm.describe_policies()


def test_duplicate_policy_names_the_two_plugins(pm: L0PluginManager) -> None:
    class Clash:
        @l0.hookimpl
        def l0_register_retry_policies(self) -> Iterator[l0.RetryPolicySpec]:
            yield l0.RetryPolicySpec("linear", lambda settings: l0.Retry(**settings))

    pm.register(Clash(), name="clash")
    with pytest.raises(L0PluginError, match=r"'linear' is offered by both '.+' and '.+'"):
        pm.retry_policies()


def test_bad_policy_records_and_raising_registration(pm: L0PluginManager) -> None:
    class Junk:
        @l0.hookimpl
        def l0_register_retry_policies(self) -> list[Any]:
            return ["not a spec"]

    pm.register(Junk(), name="junk")
    with pytest.raises(L0PluginError, match=r"plugin 'junk'.*yielded 'not a spec'"):
        pm.retry_policies()
    pm.unregister(name="junk")

    class Explodes:
        @l0.hookimpl
        def l0_register_retry_policies(self) -> Iterator[Any]:
            # A generator, like most registration hooks, that fails when iterated.
            yield from Path(os.devnull, "no", "such", "policies").read_text().split()

    pm.register(Explodes(), name="explodes")
    with pytest.raises(
        L0PluginError,
        match=r"plugin 'explodes' raised in l0_register_retry_policies: NotADirectoryError",
    ):
        pm.retry_policies()
