"""The ``sentry`` L0 plugin: breadcrumbs, one event per give-up, a span per session.

Installed, it is on whenever the application has called ``sentry_sdk.init``.
``[tool.l0.sentry] enabled = false`` or ``L0_SENTRY_ENABLED=0`` turns it off;
``L0_DISABLE_PLUGINS=sentry`` unloads it.
"""

from __future__ import annotations

from typing import Any

from l0.plugins import hookimpl
from l0_sentry.exporter import SentryExporter

__all__ = ["EXPORTER", "l0_export_event"]

EXPORTER = SentryExporter()
"""The exporter this plugin feeds (the current Sentry client and scope)."""


@hookimpl
def l0_export_event(event: Any) -> None:
    """Turn one observability event into breadcrumbs, an error event or a span."""
    EXPORTER.export(event)


l0_export_event.l0_event_types = EXPORTER.event_types  # type: ignore[attr-defined]
# Sessions skip the exporter (and build no events for it) while Sentry is not initialised.
l0_export_event.l0_active = EXPORTER.active  # type: ignore[attr-defined]
