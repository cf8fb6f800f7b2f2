"""What ``l0-otel`` costs on the full stack, against the same stack without exporters.

Contenders, each consuming the same pre-built prose token list (``bench_guardrails``), in one
process, interleaved, median of several runs:

* ``raw`` — append each token to a list, join at the end;
* ``full`` — every standard rule (``strict``), drift (when installed), checkpoints; no exporter;
* ``full+bus`` — the same with an exporter that does nothing: the event bus's own cost;
* ``full+otel-api`` — the same with ``l0-otel`` and no SDK configured (the API's no-op);
* ``full+otel-noop`` — the real SDK providers, with a span processor that drops spans and a
  meter provider without readers;
* ``full+otel-mem`` — the real SDK with ``SimpleSpanProcessor(InMemorySpanExporter)`` and an
  ``InMemoryMetricReader`` (every span kept, every metric aggregated).

The exporter works per observability event, never per token, so its cost per token shrinks
as answers grow. Results go to ``bench-results/otel.json``.

Usage: ``python benchmarks/bench_otel.py [--sizes 2000,20000,200000] [--runs 5] [--out PATH]``
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import bench_guardrails
import harness
from l0_otel import OTelExporter
from l0_otel.settings import OTelSettings
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import l0


class _NoExport:
    """An exporter that does nothing: what the event bus itself costs once anyone listens."""

    @l0.hookimpl
    def l0_export_event(self, event: Any) -> None:
        del event


class _Exporting:
    """A plugin object feeding one exporter."""

    def __init__(self, exporter: OTelExporter) -> None:
        self.exporter = exporter

    @l0.hookimpl
    def l0_export_event(self, event: Any) -> None:
        self.exporter.export(event)


# The same subscription the installed plugin declares (l0_otel.plugin).
_Exporting.l0_export_event.l0_event_types = OTelExporter().event_types  # type: ignore[attr-defined]


def _manager(plugin: object | None) -> l0.L0PluginManager:
    pm = l0.build_plugin_manager(blocked=["otel", "sentry"])
    if plugin is not None:
        pm.register(plugin, name="bench-export")
    return pm


def make_contenders(drift: bool) -> tuple[dict[str, Callable[[list[str]], Awaitable[str]]], Any]:
    strict = l0.Guardrails.strict()
    extra: dict[str, Any] = {"drift": True} if drift else {}
    settings = OTelSettings()
    memory = InMemorySpanExporter()
    mem_tracing = TracerProvider()
    mem_tracing.add_span_processor(SimpleSpanProcessor(memory))
    reader = InMemoryMetricReader()
    noop_tracing = TracerProvider()
    noop_tracing.add_span_processor(SpanProcessor())
    managers = {
        "full": _manager(None),
        "full+bus": _manager(_NoExport()),
        "full+otel-api": _manager(_Exporting(OTelExporter(settings))),
        "full+otel-noop": _manager(
            _Exporting(
                OTelExporter(settings, tracer_provider=noop_tracing, meter_provider=MeterProvider())
            )
        ),
        "full+otel-mem": _manager(
            _Exporting(
                OTelExporter(
                    settings,
                    tracer_provider=mem_tracing,
                    meter_provider=MeterProvider(metric_readers=[reader]),
                )
            )
        ),
    }

    def contender(pm: l0.L0PluginManager) -> Callable[[list[str]], Awaitable[str]]:
        async def run(tokens: list[str]) -> str:
            result = l0.run(
                lambda: bench_guardrails.source(tokens),
                guardrails=strict,
                continue_from_last_good_token=True,
                plugins=pm,
                **extra,
            )
            text = await result.read()
            memory.clear()  # keep memory flat across runs; clearing is not timed work of L0
            return text

        return run

    contenders = {"raw": harness.raw, **{name: contender(pm) for name, pm in managers.items()}}
    return contenders, memory


def main() -> None:
    options = harness.cli(__doc__, "bench-results/otel.json", default_runs=5)
    drift = bench_guardrails._drift_available()
    contenders, _ = make_contenders(drift)
    series = asyncio.run(
        harness.measure(
            contenders,
            options.sizes,
            options.runs,
            bench_guardrails.text_tokens,
            bench_guardrails.expected_text,
            label="text",
        )
    )
    harness.print_table([series])
    for row in series.rows:
        for base in ("full", "full+bus"):
            ratios = ", ".join(
                f"{name} {row.cells[name].median_s / row.cells[base].median_s:.3f}x"
                for name in row.cells
                if name.startswith("full+") and name != base
            )
            print(f"n={row.tokens}: vs {base}: {ratios}")
    meta = {"runs": options.runs, "sizes": options.sizes, "full_includes_drift": drift}
    harness.write_results(options.out, [series], meta)


if __name__ == "__main__":
    main()
