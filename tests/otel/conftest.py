"""The real OpenTelemetry SDK, installed once as the global providers, read in memory."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    HistogramDataPoint,
    InMemoryMetricReader,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


@dataclass
class Otel:
    """What the tests read: finished spans and the metric points since the test began."""

    spans_exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    _points: dict[str, list[tuple[dict[str, Any], Any]]] | None = None

    def spans(self) -> list[ReadableSpan]:
        return list(self.spans_exporter.get_finished_spans())

    def named(self, prefix: str) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.name.startswith(prefix)]

    def children(self, parent: ReadableSpan) -> list[ReadableSpan]:
        sid = parent.context.span_id
        found = [s for s in self.spans() if s.parent is not None and s.parent.span_id == sid]
        return sorted(found, key=lambda s: s.start_time or 0)

    def points(self, name: str) -> list[tuple[dict[str, Any], Any]]:
        """``(attributes, value)``: the sum for counters, ``(count, sum)`` for histograms."""
        if self._points is None:
            self._points = {}
            data = self.reader.get_metrics_data()
            for rm in data.resource_metrics if data else ():
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        out = self._points.setdefault(metric.name, [])
                        for p in metric.data.data_points:
                            value: Any
                            if isinstance(p, HistogramDataPoint):
                                value = (p.count, p.sum)
                            else:
                                value = getattr(p, "value", None)
                            out.append((dict(p.attributes or {}), value))
        return self._points.get(name, [])


@pytest.fixture(scope="session")
def otel_providers() -> tuple[InMemorySpanExporter, InMemoryMetricReader]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    delta = AggregationTemporality.DELTA
    reader = InMemoryMetricReader(preferred_temporality={Counter: delta, Histogram: delta})
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    assert trace.get_tracer_provider() is provider, "another test set the global provider"
    return exporter, reader


@pytest.fixture
def otel(
    otel_providers: tuple[InMemorySpanExporter, InMemoryMetricReader], isolated_config: None
) -> Iterator[Otel]:
    from l0_otel.settings import reset_warnings

    reset_warnings()
    exporter, reader = otel_providers
    exporter.clear()
    reader.get_metrics_data()  # drain what earlier tests recorded (delta temporality)
    yield Otel(exporter, reader)
    exporter.clear()
