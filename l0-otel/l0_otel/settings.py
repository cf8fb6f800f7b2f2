"""``[tool.l0.otel]`` / ``L0_OTEL_*``: read once per configuration, a bad value is one warning."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from l0.plugin_settings import SwitchTable, parse_bool

__all__ = ["OTelSettings", "parse_bool", "read_settings", "reset_warnings", "warn_once"]


@dataclass(frozen=True, slots=True)
class OTelSettings:
    """What ``l0-otel`` does.

    Attributes:
        enabled: Export at all (``false`` turns the plugin off without uninstalling it).
        capture_content: Put text on spans (checkpoint text, tool-call arguments and results).
        metrics: Record metrics as well as spans.
    """

    enabled: bool = True
    capture_content: bool = False
    metrics: bool = True


_TABLE = SwitchTable("otel", OTelSettings)


def warn_once(message: str) -> None:
    """Log ``message`` as a warning (logger ``l0.otel``) the first time it is seen."""
    _TABLE.warn_once(message)


def reset_warnings() -> None:
    """Forget which warnings were given, so the next bad setting is reported again."""
    _TABLE.reset_warnings()


def settings_from(table: Mapping[str, Any], sources: Mapping[str, str]) -> dict[str, bool]:
    """Parse the boolean keys of ``table``; warn (once) about each bad key or value.

    Returns:
        The valid values, by key; a bad one is left out so its default applies.
    """
    return _TABLE.parse(table, sources)


def read_settings() -> OTelSettings:
    """The settings in force, from L0's configuration (``[tool.l0.otel]``, ``L0_OTEL_*``).

    Never raises: a configuration L0 itself rejects is reported by ``l0.run``; here it means
    the defaults.
    """
    return _TABLE.read()
