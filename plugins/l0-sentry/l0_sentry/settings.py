"""``[tool.l0.sentry]`` / ``L0_SENTRY_*``: read once per session, a bad value is one warning."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

__all__ = ["SentrySettings", "read_settings", "reset_warnings"]

log = logging.getLogger("l0.sentry")

_KEYS = ("enabled", "breadcrumbs", "capture_errors", "spans")
_warned: set[str] = set()
_lock = threading.Lock()


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


def reset_warnings() -> None:
    """Forget which warnings were given, so the next bad setting is reported again."""
    with _lock:
        _warned.clear()


def _warn_once(message: str) -> None:
    with _lock:
        if message in _warned:
            return
        _warned.add(message)
    log.warning("%s", message)


def _bool(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
    return None


def read_settings() -> SentrySettings:
    """The settings in force; a bad key or value is warned about once and left at its default."""
    try:
        from l0.config import load_config

        config = load_config()
    except Exception:
        return SentrySettings()
    table = config.values.get("sentry")
    if not table:
        return SentrySettings()
    values: dict[str, bool] = {}
    for key, value in table.items():
        where = config.sources.get(f"sentry.{key}", "[tool.l0.sentry]")
        if key not in _KEYS:
            _warn_once(
                f"l0-sentry: {where}: unknown setting sentry.{key}; allowed: "
                + ", ".join(f"sentry.{k}" for k in _KEYS)
                + " (ignored)"
            )
            continue
        parsed = _bool(value)
        if parsed is None:
            _warn_once(
                f"l0-sentry: {where}: sentry.{key} = {value!r} is invalid; expected true or "
                "false (the default is used)"
            )
            continue
        values[key] = parsed
    return SentrySettings(**values)
