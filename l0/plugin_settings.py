"""On/off switches of a plugin's own ``[tool.l0.<section>]`` table, for exporter plugins.

Exporter plugins (``l0-otel``, ``l0-sentry``) keep their settings in a table of their own that
L0's configuration loader keeps as written (``[tool.l0.otel]``, ``L0_OTEL_*``): a bad exporter
setting must cost a warning, never a stream. :class:`SwitchTable` reads such a table of
booleans into the plugin's frozen dataclass, warns once per bad key or value (naming where it
was set), and keeps the default for anything it rejects.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from l0._config_schema import PLUGIN_SECTIONS

__all__ = ["SwitchTable", "parse_bool"]

_S = TypeVar("_S")


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


class SwitchTable(Generic[_S]):
    """Reads ``[tool.l0.<section>]`` (and ``L0_<SECTION>_*``) into a dataclass of bools.

    Args:
        section: The table's name: one L0's configuration loader keeps as written for its
            plugin (``"otel"``, ``"sentry"``). Warnings go to the ``l0.<section>`` logger and
            start with ``l0-<section>:``.
        settings: A dataclass whose fields are all bools with defaults; its field names are
            the allowed keys.

    Raises:
        ValueError: ``section`` is not such a table.
        TypeError: ``settings`` is not such a dataclass.
    """

    def __init__(self, section: str, settings: Callable[..., _S]) -> None:
        if section not in PLUGIN_SECTIONS:
            raise ValueError(
                f"section={section!r}: expected one of the tables L0's configuration keeps "
                f"for plugins as written: {', '.join(PLUGIN_SECTIONS)}"
            )
        fields = (
            dataclasses.fields(settings)
            if isinstance(settings, type) and dataclasses.is_dataclass(settings)
            else ()
        )
        if not fields or not all(isinstance(f.default, bool) for f in fields):
            raise TypeError(
                f"settings={settings!r}: expected a dataclass whose fields are all bools "
                "with defaults"
            )
        self.section = section
        self.keys = tuple(f.name for f in fields)
        self._settings = settings
        self._log = logging.getLogger(f"l0.{section}")
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        self._last: tuple[object, _S] | None = None

    def warn_once(self, message: str) -> None:
        """Log ``message`` as a warning the first time it is seen (per table and process)."""
        with self._lock:
            if message in self._warned:
                return
            self._warned.add(message)
        self._log.warning("%s", message)

    def reset_warnings(self) -> None:
        """Forget given warnings (and the parsed table), so bad settings are reported again."""
        with self._lock:
            self._warned.clear()
            self._last = None

    def parse(self, table: Mapping[str, Any], sources: Mapping[str, str]) -> dict[str, bool]:
        """The valid values of ``table`` by key; each bad key or value is warned about once.

        Args:
            table: The section's keys and values, as written.
            sources: Where each ``section.key`` was set (for the warning).
        """
        section = self.section
        out: dict[str, bool] = {}
        for key, value in table.items():
            where = sources.get(f"{section}.{key}", f"[tool.l0.{section}]")
            if key not in self.keys:
                self.warn_once(
                    f"l0-{section}: {where}: unknown setting {section}.{key}; allowed: "
                    + ", ".join(f"{section}.{k}" for k in self.keys)
                    + " (ignored)"
                )
                continue
            parsed = parse_bool(value)
            if parsed is None:
                self.warn_once(
                    f"l0-{section}: {where}: {section}.{key} = {value!r} is invalid; expected "
                    "true or false (the default is used)"
                )
                continue
            out[key] = parsed
        return out

    def read(self) -> _S:
        """The settings in force, from L0's configuration; never raises.

        A configuration L0 itself rejects is reported by ``l0.run``; here it means the
        defaults. The table is parsed once per configuration, not per session: the loader
        hands back the same object while the configuration holds.
        """
        try:
            from l0.config import load_config

            config = load_config()
        except Exception:
            return self._settings()
        cached = self._last
        if cached is not None and cached[0] is config:
            return cached[1]
        table = config.values.get(self.section)
        settings = (
            self._settings(**self.parse(table, config.sources)) if table else self._settings()
        )
        self._last = (config, settings)
        return settings
