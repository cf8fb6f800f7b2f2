"""l0.config: strategy spellings, explain() with sources, check() listing every problem."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import l0
from l0.config import ConfigProblem, ConfigValue, check, explain, load_config, reset_config_cache
from l0.errors import ConfigError, ConfigWarning
from l0.plugins import L0PluginManager

pytestmark = pytest.mark.usefixtures("isolated_config")


@pytest.fixture
def pm() -> L0PluginManager:
    return l0.build_plugin_manager(entry_points=False)


def never_called() -> AsyncIterator[str]:
    raise AssertionError("no request may be sent")


@pytest.mark.parametrize(
    "spelling", ["FIXED_JITTER", "fixed-jitter", "fixed_jitter", "Fixed-Jitter", " FIXED-jitter "]
)
def test_strategy_spellings_are_accepted(spelling: str) -> None:
    assert l0.Retry(strategy=spelling).strategy is l0.BackoffStrategy.FIXED_JITTER


@pytest.mark.parametrize("spelling", ["FULL_JITTER", "Exponential", "LINEAR"])
def test_strategy_spellings_in_config(
    spelling: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pm: L0PluginManager
) -> None:
    (tmp_path / "l0.toml").write_text(f'[retry]\nstrategy = "{spelling}"\n')
    settings = load_config()
    policy = l0.config.resolve_retry(None, settings, pm)
    assert policy.strategy == spelling.lower().replace("_", "-")
    monkeypatch.setenv("L0_RETRY_STRATEGY", "fixed_jitter")
    assert l0.config.resolve_retry(None, load_config(), pm).strategy == "fixed-jitter"


def test_bad_strategy_in_env_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, pm: L0PluginManager
) -> None:
    monkeypatch.setenv("L0_RETRY_STRATEGY", "exponentail")
    with pytest.raises(ConfigError) as info:
        l0.run(never_called, plugins=pm)
    assert str(info.value).startswith(
        "$L0_RETRY_STRATEGY: retry.strategy = 'exponentail': no such backoff strategy "
        "(did you mean 'exponential'?); choose one of exponential, linear, fixed, full-jitter, "
        "fixed-jitter"
    )
    assert info.value.details["key"] == "retry.strategy"


def test_bad_strategy_as_argument_fails_at_run(pm: L0PluginManager) -> None:
    with pytest.raises(ConfigError, match=r"^retry=Retry\(strategy='exponentail'\): no such"):
        l0.run(never_called, plugins=pm, retry=l0.Retry(strategy="exponentail"))


def test_bad_policy_spelling_is_folded_and_a_typo_is_named(
    tmp_path: Path, pm: L0PluginManager
) -> None:
    (tmp_path / "l0.toml").write_text('[retry]\npolicy = "FULL_JITTER"\n')
    assert l0.config.resolve_retry(None, load_config(), pm).strategy == "full-jitter"
    (tmp_path / "l0.toml").write_text('[retry]\npolicy = "exponentail"\n')
    with pytest.raises(ConfigError, match=r"no such policy \(did you mean 'exponential'\?\)"):
        l0.run(never_called, plugins=pm)


def test_a_plugin_strategy_is_accepted_and_checked_once(
    tmp_path: Path, pm: L0PluginManager
) -> None:
    calls: list[str] = []

    class Steps:
        @l0.hookimpl
        def l0_backoff_delay(self, attempt: int, policy: l0.Retry) -> float | None:
            calls.append(str(policy.strategy))
            return 0.0 if policy.strategy == "steps" else None

    pm.register(Steps(), name="steps")
    (tmp_path / "l0.toml").write_text('[retry]\nstrategy = "steps"\n')
    for _ in range(3):
        l0.run(never_called, plugins=pm)
    assert calls == ["steps"]  # resolved once per manager and configuration


def test_explain_names_the_source_of_every_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pm: L0PluginManager
) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.l0]\nretry.policy = "linear"\nretry.attempts = 5\ntimeout.inter_token = 9\n'
    )
    monkeypatch.setenv("L0_RETRY_MAX_RETRIES", "8")
    values = {v.key: v for v in explain(plugins=pm)}
    assert all(isinstance(v, ConfigValue) for v in values.values())
    pyproject = f"{tmp_path / 'pyproject.toml'} [tool.l0]"
    assert values["retry.policy"] == ConfigValue("retry.policy", "linear", "pyproject", pyproject)
    assert values["retry.attempts"] == ConfigValue("retry.attempts", 5, "pyproject", pyproject)
    assert values["retry.max_retries"] == ConfigValue(
        "retry.max_retries", 8, "environment", "$L0_RETRY_MAX_RETRIES"
    )
    assert values["retry.strategy"].value == "linear"  # the policy's own strategy
    assert values["retry.strategy"].source == "default"
    assert values["retry.strategy"].location == "retry policy 'linear'"
    assert values["timeout.inter_token"].source == "pyproject"
    assert values["timeout.initial_token"].source == "default"
    assert values["plugins.disable"] == ConfigValue(
        "plugins.disable", [], "default", "nothing disabled"
    )
    # An argument replaces the configured policy, as in l0.run.
    argued = {v.key: v for v in explain(plugins=pm, retry=l0.Retry(attempts=1))}
    assert argued["retry.attempts"] == ConfigValue(
        "retry.attempts", 1, "argument", "l0.run(retry=...)"
    )
    (tmp_path / "l0.toml").write_text("[drift]\nwindow = 64\n")
    in_l0_toml = {v.key: v for v in explain(plugins=pm)}
    assert in_l0_toml["drift.window"] == ConfigValue(
        "drift.window", 64, "l0.toml", str(tmp_path / "l0.toml")
    )
    with pytest.raises(TypeError, match=r"retry=3: expected l0\.Retry"):
        explain(retry=3)  # type: ignore[arg-type]


def test_check_lists_every_problem_without_raising(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pm: L0PluginManager
) -> None:
    (tmp_path / "l0.toml").write_text(
        "[retry]\nattempts = -1\nmax_retry = 2\n[drift]\nthreshold = 3\n[retri]\nx = 1\n"
    )
    monkeypatch.setenv("L0_TIMEOUT_INTER", "5")
    problems = check(plugins=pm)
    assert all(isinstance(p, ConfigProblem) for p in problems)
    assert [(p.key, p.severity) for p in problems] == [
        ("retry.attempts", "error"),
        ("retry.max_retry", "error"),
        ("drift.threshold", "error"),
        ("retri", "error"),
        ("L0_TIMEOUT_INTER", "warning"),
    ]
    assert "did you mean 'retry.max_retries'?" in problems[1].message
    assert problems[4].message.endswith("did you mean $L0_TIMEOUT_INTER_TOKEN?")
    with pytest.raises(ConfigError, match=r"retry\.attempts = -1 is invalid"):
        load_config()


def test_check_asks_the_plugins(tmp_path: Path, pm: L0PluginManager) -> None:
    (tmp_path / "l0.toml").write_text(
        '[retry]\nstrategy = "expo"\n[plugins]\ndisable = ["santry"]\n'
    )
    problems = check(plugins=pm)
    assert [(p.key, p.value, p.severity) for p in problems] == [
        ("retry.strategy", "expo", "error"),
        ("plugins.disable", "santry", "warning"),
    ]
    assert problems[0].location == str(tmp_path / "l0.toml")
    (tmp_path / "l0.toml").write_text('[retry]\nstrategy = "FIXED_JITTER"\n')
    assert check(plugins=pm) == []


def test_unknown_disabled_plugin_warns_once_naming_the_closest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("L0_DISABLE_PLUGINS", "opnai")
    with pytest.warns(ConfigWarning) as caught:
        l0.build_plugin_manager()
    assert [str(w.message) for w in caught if w.category is ConfigWarning] == [
        "plugins.disable names 'opnai', which is not an installed plugin; did you mean 'openai'?"
    ]
    import warnings

    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        l0.build_plugin_manager()
    assert not [w for w in again if w.category is ConfigWarning]


def test_default_manager_follows_plugins_config(tmp_path: Path) -> None:
    first = l0.default_plugin_manager()
    assert "openai" in {i.name for i in first.list_plugins()}
    assert l0.default_plugin_manager() is first
    (tmp_path / "l0.toml").write_text('[plugins]\ndisable = ["openai"]\n')
    second = l0.default_plugin_manager()
    assert second is not first
    assert "openai" not in {i.name for i in second.list_plugins()}
    reset_config_cache()
