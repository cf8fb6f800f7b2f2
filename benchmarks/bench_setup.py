"""Session set-up: ``l0.run(three).read()`` over a 3-token string stream, per call.

Contenders, interleaved run after run in one process (median of the runs, each a loop of
``--calls`` sessions), every one against the same 3-token async generator:

* ``bare`` — ``[t async for t in three()]`` and a join: the baseline;
* ``default`` — ``l0.run`` with default options and the plugins of a default install (the
  OpenAI and LiteLLM adapters, guardrail rules, drift detectors), exporters not installed
  (``L0_PLUGINS_DISABLE=otel,sentry``);
* ``exporters`` — the same with the ``otel`` and ``sentry`` exporter plugins installed but
  their backends not set up (no OpenTelemetry SDK provider, no ``sentry_sdk.init``);
* ``otel_sdk`` — ``plugins=`` a manager whose OTel exporter has real SDK tracer and meter
  providers (no span processor or metric reader: the SDK's own cost, not an export's).

The test-suite's fixture plugins (``sample``, ``example_guardrail``) are disabled in every
contender; they are not part of an install. Prints microseconds per call and the ratio to
``bare``; writes ``bench-results/setup.json``.

Usage: ``python benchmarks/bench_setup.py [--calls 2000] [--runs 7]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import l0

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = "sample,example_guardrail"


async def three() -> AsyncIterator[str]:
    yield "a"
    yield "b"
    yield "c"


def otel_sdk_plugins() -> Any:
    """A manager like the default one, its OTel exporter on real SDK providers."""
    from l0_otel.exporter import OTelExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    exporter = OTelExporter(tracer_provider=TracerProvider(), meter_provider=MeterProvider())

    class SdkExport:
        @l0.hookimpl
        def l0_export_event(self, event: Any) -> None:
            exporter.export(event)

        l0_export_event.l0_event_types = exporter.event_types  # type: ignore[attr-defined]

    plugins = l0.build_plugin_manager(blocked=["otel", "sentry", *FIXTURES.split(",")])
    plugins.register(SdkExport(), name="otel-sdk")
    return plugins


def contenders(calls: int) -> dict[str, tuple[str | None, Callable[[], Awaitable[None]]]]:
    """Name to (``L0_PLUGINS_DISABLE`` to set, or None, and the timed loop)."""
    sdk = otel_sdk_plugins()

    async def bare() -> None:
        for _ in range(calls):
            "".join([token async for token in three()])

    async def run() -> None:
        for _ in range(calls):
            await l0.run(three).read()

    async def run_sdk() -> None:
        for _ in range(calls):
            await l0.run(three, plugins=sdk).read()

    return {
        "bare": (None, bare),
        "default": (f"otel,sentry,{FIXTURES}", run),
        "exporters": (FIXTURES, run),
        "otel_sdk": (FIXTURES, run_sdk),
    }


async def measure(calls: int, runs: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Microseconds per call of every contender, one value per run: wall time, CPU time.

    The CPU time is this thread's (``time.thread_time``): on a shared machine it leaves out
    the time other processes held the core, which wall time does not.
    """
    kinds = contenders(calls)
    wall: dict[str, list[float]] = {name: [] for name in kinds}
    cpu: dict[str, list[float]] = {name: [] for name in kinds}
    for run_index in range(runs + 1):
        for name, (disable, loop) in kinds.items():
            if disable is not None:
                os.environ["L0_PLUGINS_DISABLE"] = disable
                # One untimed session: the configuration change rebuilds the default manager.
                await l0.run(three).read()
            gc.collect()
            start, start_cpu = time.perf_counter(), time.thread_time()
            await loop()
            if run_index:  # the first round warms up
                cpu[name].append((time.thread_time() - start_cpu) / calls * 1e6)
                wall[name].append((time.perf_counter() - start) / calls * 1e6)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=2000, help="sessions per run")
    parser.add_argument("--runs", type=int, default=7, help="timed runs per contender")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results" / "setup.json")
    options, _ = parser.parse_known_args()  # nox -s bench passes the other scripts' options
    if options.calls < 1 or options.runs < 1:
        parser.error("--calls and --runs must be >= 1")
    wall, cpu = asyncio.run(measure(options.calls, options.runs))
    medians = {name: statistics.median(values) for name, values in wall.items()}
    cpu_medians = {name: statistics.median(values) for name, values in cpu.items()}
    bare, bare_cpu = medians["bare"], cpu_medians["bare"]
    print(f"session set-up, {options.calls} calls x {options.runs} runs, median µs per call:")
    print(f"  {'':>10} {'wall':>8}  {'÷ bare':>7}  {'CPU':>8}  {'÷ bare':>7}")
    for name, value in medians.items():
        used = cpu_medians[name]
        print(
            f"  {name:>10} {value:8.1f}  {value / bare:6.1f}x  {used:8.1f}  {used / bare_cpu:6.1f}x"
        )
    document = {
        "meta": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "calls": options.calls,
            "runs": options.runs,
        },
        "us_per_call": medians,
        "ratio_to_bare": {name: value / bare for name, value in medians.items()},
        "cpu_us_per_call": cpu_medians,
        "cpu_ratio_to_bare": {name: value / bare_cpu for name, value in cpu_medians.items()},
        "runs_us": wall,
        "cpu_runs_us": cpu,
    }
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {options.out}")


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
