"""The ``otel`` L0 plugin: every observability event to the global OpenTelemetry providers.

Installed, it is on: spans and metrics go wherever the application's OpenTelemetry SDK sends
them, and nowhere (no-op) when no SDK is configured. ``[tool.l0.otel] enabled = false`` or
``L0_OTEL_ENABLED=0`` turns it off; ``L0_DISABLE_PLUGINS=otel`` unloads it.
"""

from __future__ import annotations

from typing import Any

from l0.plugins import hookimpl
from l0_otel.exporter import OTelExporter

__all__ = ["EXPORTER", "l0_export_event"]

EXPORTER = OTelExporter()
"""The exporter this plugin feeds (global providers, settings read per session)."""


@hookimpl
def l0_export_event(event: Any) -> None:
    """Turn one observability event into spans, span events and metrics."""
    EXPORTER.export(event)


l0_export_event.l0_event_types = EXPORTER.event_types  # type: ignore[attr-defined]
# Sessions hand over prompt and completion text only while ``capture_content`` is on.
l0_export_event.l0_wants_content = EXPORTER.wants_content  # type: ignore[attr-defined]
# Sessions skip the exporter (and build no events for it) while no OTel SDK is set up.
l0_export_event.l0_active = EXPORTER.active  # type: ignore[attr-defined]
