"""``[tool.l0.sentry]`` / ``L0_SENTRY_*``: read once per configuration; a bad value warns once."""

from __future__ import annotations

from dataclasses import dataclass

from l0.plugin_settings import SwitchTable

__all__ = ["SentrySettings", "read_settings", "reset_warnings"]


@dataclass(frozen=True, slots=True)
class SentrySettings:
    """What ``l0-sentry`` does.

    Attributes:
        enabled: Export at all (``false`` turns the plugin off without uninstalling it).
        breadcrumbs: Add a breadcrumb for each retry, fallback, timeout, violation, drift.
        capture_errors: Send one Sentry event when a session gives up.
        spans: Add a span per session to the current transaction.
    """

    enabled: bool = True
    breadcrumbs: bool = True
    capture_errors: bool = True
    spans: bool = True


_TABLE = SwitchTable("sentry", SentrySettings)


def reset_warnings() -> None:
    """Forget which warnings were given, so the next bad setting is reported again."""
    _TABLE.reset_warnings()


def read_settings() -> SentrySettings:
    """The settings in force; a bad key or value is warned about once and left at its default.

    Never raises. Parsed once per configuration (the loader hands back the same object while
    the configuration holds), not on every session.
    """
    return _TABLE.read()
