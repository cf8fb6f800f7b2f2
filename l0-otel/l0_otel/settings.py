"""``[tool.l0.otel]`` / ``L0_OTEL_*``: read once per session, a bad value is one warning."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["OTelSettings", "parse_bool", "read_settings", "reset_warnings", "warn_once"]

log = logging.getLogger("l0.otel")

_warned: set[str] = set()
_warn_lock = threading.Lock()


def warn_once(message: str) -> None:
    """Log ``message`` as a warning the first time it is seen in this process."""
    with _warn_lock:
        if message in _warned:
            return
        _warned.add(message)
    log.warning("%s", message)


def reset_warnings() -> None:
    """Forget which warnings were given, so the next bad setting is reported again."""
    with _warn_lock:
        _warned.clear()


def parse_bool(value: object) -> bool | None:
    """``value`` as a bool (TOML bool, or a string such as ``"1"``/``"off"``), or ``None``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
    return None


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


_KEYS = ("enabled", "capture_content", "metrics")


def settings_from(
    table: Mapping[str, Any], sources: Mapping[str, str], *, section: str = "otel"
) -> dict[str, bool]:
    """Parse the boolean keys of ``table``; warn (once) about each bad key or value.

    Returns:
        The valid values, by key; a bad one is left out so its default applies.
    """
    out: dict[str, bool] = {}
    for key, value in table.items():
        where = sources.get(f"{section}.{key}", f"[tool.l0.{section}]")
        if key not in _KEYS:
            warn_once(
                f"l0-{section}: {where}: unknown setting {section}.{key}; allowed: "
                + ", ".join(f"{section}.{k}" for k in _KEYS)
                + " (ignored)"
            )
            continue
        parsed = parse_bool(value)
        if parsed is None:
            warn_once(
                f"l0-{section}: {where}: {section}.{key} = {value!r} is invalid; expected true "
                "or false (the default is used)"
            )
            continue
        out[key] = parsed
    return out


def read_settings() -> OTelSettings:
    """The settings in force, from L0's configuration (``[tool.l0.otel]``, ``L0_OTEL_*``).

    Never raises: a configuration L0 itself rejects is reported by ``l0.run``; here it means
    the defaults.
    """
    try:
        from l0.config import load_config

        config = load_config()
    except Exception:
        return OTelSettings()
    table = config.values.get("otel")
    if not table:
        return OTelSettings()
    return OTelSettings(**settings_from(table, config.sources))
