"""OpenTelemetry for L0: a span per session, a child span per attempt, GenAI metrics.

Install ``l0-otel`` and configure the OpenTelemetry SDK as usual; every L0 session then
appears in your traces and metrics with no code change. See ``docs/observability.md``.
"""

from __future__ import annotations

__version__ = "0.1.0"

from l0_otel.exporter import OTelExporter
from l0_otel.settings import OTelSettings

__all__ = ["OTelExporter", "OTelSettings", "__version__"]
