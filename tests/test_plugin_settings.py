"""l0.plugin_settings: an exporter plugin's table of switches, read through L0's configuration."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pytest

from l0.config import reset_config_cache
from l0.plugin_settings import SwitchTable, parse_bool


@dataclass(frozen=True, slots=True)
class Switches:
    enabled: bool = True
    capture_content: bool = False


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "l0.otel"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        ("1", True),
        (" On ", True),
        ("yes", True),
        ("off", False),
        ("", False),
        ("0", False),
        ("maybe", None),
        (1, None),
        (None, None),
    ],
)
def test_parse_bool(value: object, expected: bool | None) -> None:
    assert parse_bool(value) is expected


def test_parse_keeps_good_values_and_warns_once_per_bad_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    table = SwitchTable("otel", Switches)
    sources = {"otel.enabled": "$L0_OTEL_ENABLED"}
    with caplog.at_level(logging.WARNING, logger="l0.otel"):
        for _ in range(3):
            got = table.parse(
                {"enabled": "maybe", "capture_content": "on", "colour": True}, sources
            )
            assert got == {"capture_content": True}
    bad, unknown = warnings_of(caplog)
    assert bad == (
        "l0-otel: $L0_OTEL_ENABLED: otel.enabled = 'maybe' is invalid; expected true or false "
        "(the default is used)"
    )
    assert unknown == (
        "l0-otel: [tool.l0.otel]: unknown setting otel.colour; allowed: otel.enabled, "
        "otel.capture_content (ignored)"
    )
    caplog.clear()
    table.reset_warnings()
    with caplog.at_level(logging.WARNING, logger="l0.otel"):
        table.parse({"colour": True}, {})
    assert len(warnings_of(caplog)) == 1


def test_read_follows_the_configuration_and_parses_it_once(
    isolated_config: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = SwitchTable("otel", Switches)
    assert table.read() == Switches()
    reset_config_cache()
    (tmp_path / "pyproject.toml").write_text("[tool.l0.otel]\ncapture_content = true\n")
    first = table.read()
    assert first == Switches(capture_content=True)
    assert table.read() is first  # the same configuration: parsed once
    reset_config_cache()
    monkeypatch.setenv("L0_OTEL_ENABLED", "false")
    assert table.read() == Switches(enabled=False, capture_content=True)


@pytest.mark.parametrize("section", ["", "OTel", "my_plugin", "retry", 3])
def test_section_must_be_a_plugin_table(section: object) -> None:
    with pytest.raises(ValueError, match=r"section=.*tables .* as written: otel, sentry"):
        SwitchTable(section, Switches)  # type: ignore[arg-type]


@dataclass
class NotSwitches:
    retries: int = 3


class Plain:
    enabled = True


@pytest.mark.parametrize("settings", [NotSwitches, Plain, dict, Switches()])
def test_settings_must_be_a_dataclass_of_bools(settings: object) -> None:
    with pytest.raises(TypeError, match=r"settings=.*expected a dataclass whose fields are all"):
        SwitchTable("otel", settings)  # type: ignore[arg-type]
