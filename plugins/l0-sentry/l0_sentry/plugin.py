"""The ``sentry`` L0 plugin: breadcrumbs, one event per give-up, a span per session.

Installed, it is on whenever the application has called ``sentry_sdk.init``.
``[tool.l0.sentry] enabled = false`` or ``L0_SENTRY_ENABLED=0`` turns it off;
``L0_DISABLE_PLUGINS=sentry`` unloads it.
"""

from __future__ import annotations

import functools
import sys
from typing import TYPE_CHECKING, Any

from l0.plugins import hookimpl
from l0_sentry._events import EVENT_TYPES

if TYPE_CHECKING:
    from l0_sentry.exporter import SentryExporter

    EXPORTER: SentryExporter
    """The exporter this plugin feeds, made on first use (the current Sentry client and scope)."""

__all__ = ["EXPORTER", "l0_export_event"]


@functools.cache
def _exporter() -> SentryExporter:
    # Made (and sentry_sdk imported) only once Sentry is in the process: a plugin that is
    # installed but unused costs a process no import.
    from l0_sentry.exporter import SentryExporter

    return SentryExporter()


def __getattr__(name: str) -> Any:
    if name == "EXPORTER":
        return _exporter()
    raise AttributeError(f"module 'l0_sentry.plugin' has no attribute {name!r}")


def _active() -> bool:
    """Whether a session starting now feeds the exporter (``l0_active``).

    Sentry cannot be initialised in a process that never imported ``sentry_sdk``: then no, at
    the cost of a dict lookup. Otherwise the exporter asks the current client.
    """
    if "sentry_sdk" not in sys.modules:
        return False
    return _exporter().active()


@hookimpl
def l0_export_event(event: Any) -> None:
    """Turn one observability event into breadcrumbs, an error event or a span."""
    _exporter().export(event)


l0_export_event.l0_event_types = EVENT_TYPES  # type: ignore[attr-defined]
# Sessions skip the exporter (and build no events for it) while Sentry is not initialised.
l0_export_event.l0_active = _active  # type: ignore[attr-defined]
