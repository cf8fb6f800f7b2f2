"""l0.inventory: plugins, what they register, and the configuration with its sources."""

from __future__ import annotations

from pathlib import Path

import pytest

import l0
from l0.guardrails import RuleSpec
from l0.inventory import inventory


class ShoutRule:
    """An in-process plugin registering one guardrail rule."""

    @l0.hookimpl
    def l0_register_guardrails(self) -> list[RuleSpec]:
        return [RuleSpec("shout", lambda **_: l0.pattern_rule(), "no shouting")]


def test_in_process_plugins_and_their_rules(isolated_config: None) -> None:
    pm = l0.build_plugin_manager(entry_points=False)
    pm.register(ShoutRule(), name="shouty")
    found = inventory(pm)
    names = {p.name: p for p in found.plugins}
    assert names["shouty"].origin == "in-process"
    assert names["retry"].builtin
    assert [(r.name, r.plugin, r.description) for r in found.guardrail_rules] == [
        ("shout", "shouty", "no shouting")
    ]
    assert found.drift_detectors == []  # no entry points: the drift plugin is not loaded
    assert "fixed-jitter" in [p.name for p in found.retry_policies]
    assert found.adapters[-1].name == "iter_adapter"  # asked last
    assert found.config_file is None
    data = found.to_dict()
    assert data["guardrail_rules"] == [
        {"name": "shout", "plugin": "shouty", "description": "no shouting"}
    ]


def test_config_values_and_sources(isolated_config: None, monkeypatch: pytest.MonkeyPatch) -> None:
    Path("pyproject.toml").write_text("[tool.l0.retry]\nmax_retries = 9\n")
    monkeypatch.setenv("L0_RETRY_SEED", "4")
    found = inventory(l0.build_plugin_manager(entry_points=False))
    config = {c.key: (c.value, c.source, c.location) for c in found.config}
    here = Path("pyproject.toml").resolve()
    assert config["retry.max_retries"] == (9, "pyproject", f"{here} [tool.l0]")
    assert config["retry.seed"] == (4, "environment", "$L0_RETRY_SEED")
    assert config["retry.attempts"] == (3, "default", "retry policy 'fixed-jitter'")
    assert config["timeout.inter_token"][1] == "default"
    assert found.config_file == str(here)


def test_an_invalid_config_fails(isolated_config: None) -> None:
    Path("l0.toml").write_text("[retry]\nattempts = -1\n")
    with pytest.raises(l0.ConfigError, match=r"retry\.attempts = -1"):
        inventory(l0.build_plugin_manager(entry_points=False))


def test_bad_plugins_argument(isolated_config: None) -> None:
    with pytest.raises(
        TypeError, match=r"inventory\(plugins='pm'\): expected an l0.L0PluginManager"
    ):
        inventory("pm")  # type: ignore[arg-type]
