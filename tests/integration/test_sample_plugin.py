"""The sample third-party plugin, installed as a real distribution, extends the kernel.

``tests/fixtures/l0-sample-plugin`` is installed (not editable) by nox and by the dev setup:
``pip install --no-deps ./tests/fixtures/l0-sample-plugin``. Its ``l0`` entry point comes from
installed metadata, exactly as a plugin from PyPI would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from l0_sample_plugin import STRATEGY, SampleError, SampleStream, steps_delay

import l0
from l0.config import load_config, reset_config_cache, resolve_retry
from l0.errors import AdapterNotFoundError, ConfigError
from l0.events import ObservabilityEventType

SAMPLE_VERSION = metadata.version("l0-sample-plugin")


pytestmark = pytest.mark.usefixtures("isolated_config")


def chunks(*pieces: str | BaseException) -> SampleStream:
    return SampleStream(
        [{"boom": p} if isinstance(p, BaseException) else {"piece": p} for p in pieces]
    )


def delays(events: list[Any]) -> list[float]:
    return [e["delay_ms"] for e in events if e.type is ObservabilityEventType.RETRY_ATTEMPT]


def test_entry_point_comes_from_installed_metadata() -> None:
    (ep,) = [ep for ep in metadata.entry_points(group="l0") if ep.name == "sample"]
    assert ep.value == "l0_sample_plugin.plugin"
    assert ep.dist is not None
    assert ep.dist.name == "l0-sample-plugin"
    assert "site-packages" in str(ep.dist.locate_file(""))  # installed, not the source tree


def test_listed_with_its_version_and_hooks() -> None:
    infos = {i.name: i for i in l0.default_plugin_manager().list_plugins()}
    sample = infos["sample"]
    assert sample.origin == "l0-sample-plugin"
    assert sample.version == SAMPLE_VERSION
    assert not sample.builtin
    assert sample.hooks == (
        "l0_backoff_delay",
        "l0_detect_adapter",
        "l0_register_retry_policies",
        "l0_retry_decision",
    )


async def test_overrides_the_retry_decision_and_backoff() -> None:
    calls = 0

    def factory() -> SampleStream:
        nonlocal calls
        calls += 1
        if calls <= 2:
            return chunks("par", SampleError("try again", delay=0.003))
        return chunks("Hello", " world")

    events: list[Any] = []
    # attempts=0 and a 10 s base delay: the builtins would not retry a model error at all,
    # and would wait seconds if they did.
    result = l0.run(
        factory,
        retry=l0.Retry(attempts=0, base_delay=10.0, max_delay=10.0),
        on_event=events.append,
    )
    assert await result.read() == "Hello world"
    await result.wait_callbacks()
    assert calls == 3
    assert result.state.model_retry_count == 0
    assert result.state.network_retry_count == 2
    assert delays(events) == [3.0, 3.0]
    attempts = [e for e in events if e.type is ObservabilityEventType.RETRY_ATTEMPT]
    assert {e["reason"] for e in attempts} == {"sample: retry"}


async def test_its_refusal_ends_the_stream() -> None:
    calls = 0

    def factory() -> SampleStream:
        nonlocal calls
        calls += 1
        return chunks(SampleError("give up", retry=False))

    with pytest.raises(l0.RetryExhaustedError, match="sample: told not to retry"):
        await l0.run(factory, retry=l0.Retry(base_delay=0)).read()
    assert calls == 1


async def test_it_leaves_other_errors_alone() -> None:
    calls = 0

    def factory() -> SampleStream:
        nonlocal calls
        calls += 1
        return chunks(RuntimeError("model error")) if calls == 1 else chunks("ok")

    result = l0.run(factory, retry=l0.Retry(base_delay=0))
    assert await result.read() == "ok"
    assert result.state.model_retry_count == 1  # the builtin accounting


async def test_its_adapter_reads_its_streams() -> None:
    result = l0.run(lambda: chunks("a", "b", "c"), retry=l0.Retry(base_delay=0))
    events = [e async for e in result]
    assert [e.text for e in events if e.is_token] == ["a", "b", "c"]
    assert result.raw() == [{"piece": "a"}, {"piece": "b"}, {"piece": "c"}]


async def test_its_policy_is_selectable_from_config(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.l0]\nretry.policy = "sample-patient"\nretry.max_delay = 0.02\n'
    )
    pm = l0.default_plugin_manager()
    policy = resolve_retry(None, load_config(), pm)
    assert policy.strategy == STRATEGY
    assert (policy.attempts, policy.max_retries, policy.max_delay) == (1, 4, 0.02)
    assert "sample-patient (l0-sample-plugin " in pm.describe_policies()

    calls = 0

    def factory() -> SampleStream:
        nonlocal calls
        calls += 1
        return chunks(ConnectionResetError("reset")) if calls <= 3 else chunks("done")

    events: list[Any] = []
    result = l0.run(factory, on_event=events.append)
    assert await result.read() == "done"
    await result.wait_callbacks()
    assert delays(events) == pytest.approx([steps_delay(i, policy) * 1000 for i in range(3)])
    assert delays(events) == pytest.approx([10.0, 20.0, 20.0])  # 0.01 * (i+1)**2, capped


def disabled_checks(pm: l0.L0PluginManager) -> None:
    assert "sample" not in {i.name for i in pm.list_plugins()}
    assert "sample-patient" not in pm.retry_policies()


async def test_disabled_by_config(tmp_path: Path) -> None:
    (tmp_path / "l0.toml").write_text('[plugins]\ndisable = ["sample"]\n')
    disabled_checks(l0.default_plugin_manager())
    with pytest.raises(AdapterNotFoundError):
        await l0.run(lambda: chunks("a"), retry=l0.Retry(base_delay=0)).read()
    (tmp_path / "l0.toml").write_text(
        '[plugins]\ndisable = ["sample"]\n[retry]\npolicy = "sample-patient"\n'
    )
    reset_config_cache()
    l0.reset_default_plugin_manager()
    with pytest.raises(ConfigError, match="'sample-patient': no such policy; choose one of"):
        l0.run(lambda: chunks("a"))


async def test_disabled_by_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("L0_DISABLE_PLUGINS", "sample")
    disabled_checks(l0.default_plugin_manager())
    disabled_checks(l0.build_plugin_manager())
    monkeypatch.delenv("L0_DISABLE_PLUGINS")
    monkeypatch.setenv("L0_LOAD_PLUGINS", "openai")
    disabled_checks(l0.build_plugin_manager())
    monkeypatch.delenv("L0_LOAD_PLUGINS")
    # Without the plugin, its strategy name has no formula: l0.run fails at once, before any
    # request, instead of at the first retry (issue 8).
    pm = l0.build_plugin_manager(blocked=["sample"])
    started = []

    async def flaky() -> AsyncIterator[str]:
        started.append(1)
        yield "a"
        raise ConnectionResetError("x")

    with pytest.raises(
        ConfigError, match=rf"retry=Retry\(strategy='{STRATEGY}'\): no such backoff strategy"
    ):
        l0.run(flaky, plugins=pm, retry=l0.Retry(strategy=STRATEGY))
    assert started == []
    # With the plugin loaded, the name is accepted.
    with_plugin = l0.build_plugin_manager()
    result = l0.run(flaky, plugins=with_plugin, retry=l0.Retry(strategy=STRATEGY))
    assert started == []
    await result.aclose()
