"""This round's check-path changes, each against what it replaced, side by side in one run.

Every pair runs interleaved in one process (CPU time, ``time.process_time``), round after
round, and the median over rounds of the ratio within a round is reported:

* ``final_parse`` — ``strict_json``'s final verdict on a 1 MB JSON answer with the optional
  ``pysimdjson`` validator (``_json_error`` as shipped) and with orjson alone;
* ``json_batch`` — ``l0.run(..., guardrails=[l0.json_rule(batch=256)])`` (the default) and
  ``batch=1`` (a scan per check), over 200,000 JSON tokens;
* ``repetition_stride`` — ``l0.repetition_rule(stride=64)`` (the default) and ``stride=32``;
* ``end_only`` — ``guardrails=[l0.zero_output_rule()]`` (a rule that judges only at the end)
  and no guardrails at all;
* ``format_blanking`` — drift's JSON format tracker fed 1 MB of JSON in 1 KB windows,
  blanking strings by splitting on quotes and by the regex it replaced;
* ``shared_interval_json`` and ``shared_interval_prose`` — the full stack (the ``strict``
  preset, ``drift=True``, checkpoints) at the default intervals, one check per 10 tokens for
  all three, and with ``check_intervals={"guardrails": 5}`` (the previous default), over
  200,000 JSON and prose tokens;
* ``cold_start`` — wall time of a fresh interpreter's first ``l0.run(...).read()`` with every
  installed plugin and with the Redis and Sentry plugins disabled (their cost when installed
  but not configured; about 1.0 means none).

Results go to ``bench-results/checks.json``.

Usage: ``python benchmarks/bench_checks.py [--runs 7] [--out PATH]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import harness
from bench_guardrails import json_tokens, text_tokens
from l0_drift import detectors
from l0_guardrails import json_rules

import l0

Pair = tuple[Callable[[], Awaitable[object]], Callable[[], Awaitable[object]]]

COLD = """
import asyncio, time
started = time.perf_counter()
import l0
async def tokens():
    yield "x"
async def main():
    return await l0.run(tokens).read()
asyncio.run(main())
print(time.perf_counter() - started)
"""


def _session(tokens: list[str], **options: Any) -> Callable[[], Awaitable[str]]:
    async def run() -> str:
        return await l0.run(lambda: harness.source(tokens), **options).read()

    return run


def _full(
    tokens: list[str], intervals: dict[str, int] | None = None
) -> Callable[[], Awaitable[str]]:
    return _session(
        tokens,
        guardrails=l0.Guardrails.strict(),
        drift=True,
        continue_from_last_good_token=True,
        check_intervals=intervals,
    )


def pairs() -> dict[str, Pair]:
    tokens = json_tokens(200_000)
    prose = text_tokens(200_000)
    text = "".join(tokens)
    windows = [text[i : i + 1024] for i in range(0, len(text), 1024)]

    async def with_validator() -> object:
        return json_rules._json_error(text)

    async def orjson_alone() -> object:
        saved, json_rules._simdjson = json_rules._simdjson, None
        try:
            return json_rules._json_error(text)
        finally:
            json_rules._simdjson = saved

    def track() -> object:
        tracker = detectors._JsonTrack()
        for window in windows:
            tracker.feed(window)
        return tracker.depth, tracker.prose_words, tracker.in_string, tracker.closed

    async def split() -> object:
        return track()

    async def regex() -> object:
        saved = detectors._blank_strings
        detectors._blank_strings = detectors._blank_strings_regex
        try:
            return track()
        finally:
            detectors._blank_strings = saved

    return {
        "final_parse": (with_validator, orjson_alone),
        "json_batch": (
            _session(tokens, guardrails=[l0.json_rule()]),
            _session(tokens, guardrails=[l0.json_rule(batch=1)]),
        ),
        "repetition_stride": (
            _session(tokens, guardrails=[l0.repetition_rule()]),
            _session(tokens, guardrails=[l0.repetition_rule(stride=32)]),
        ),
        "end_only": (_session(tokens, guardrails=[l0.zero_output_rule()]), _session(tokens)),
        "format_blanking": (split, regex),
        "shared_interval_json": (_full(tokens), _full(tokens, {"guardrails": 5})),
        "shared_interval_prose": (_full(prose), _full(prose, {"guardrails": 5})),
    }


def _first_run(disable: str | None) -> float:
    env = {k: v for k, v in os.environ.items() if k != "L0_PLUGINS_DISABLE"}
    if disable:
        env["L0_PLUGINS_DISABLE"] = disable
    done = subprocess.run(
        [sys.executable, "-c", COLD], capture_output=True, text=True, env=env, check=True
    )
    return float(done.stdout.strip().splitlines()[-1])


async def measure(runs: int) -> dict[str, dict[str, float]]:
    """Per pair: median seconds of each side and the median ratio (this change ÷ before)."""
    found: dict[str, dict[str, float]] = {}
    for name, (new, old) in pairs().items():
        assert await new() == await old(), name  # the same answer both ways
        times: dict[str, list[float]] = {"new": [], "old": []}
        ratios = []
        for index in range(runs):
            order = (("new", new), ("old", old)) if index % 2 == 0 else (("old", old), ("new", new))
            this: dict[str, float] = {}
            for side, fn in order:
                start = time.process_time()
                await fn()
                this[side] = time.process_time() - start
                times[side].append(this[side])
            ratios.append(this["new"] / this["old"])
        found[name] = {
            "new_s": statistics.median(times["new"]),
            "old_s": statistics.median(times["old"]),
            "ratio": statistics.median(ratios),
        }
    cold: dict[str, list[float]] = {"all": [], "without": []}
    for _ in range(max(3, runs // 2)):
        cold["all"].append(_first_run(None))
        cold["without"].append(_first_run("redis,sentry"))
    found["cold_start"] = {
        "new_s": statistics.median(cold["all"]),
        "old_s": statistics.median(cold["without"]),
        "ratio": statistics.median(
            a / w for a, w in zip(cold["all"], cold["without"], strict=True)
        ),
    }
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("bench-results/checks.json"))
    options, _ = parser.parse_known_args()
    results = asyncio.run(measure(options.runs))
    print(f"{'pair':18} {'this change':>12} {'compared':>12} {'ratio':>7}")
    for name, row in results.items():
        new, old = row["new_s"] * 1e3, row["old_s"] * 1e3
        print(f"{name:18} {new:10.2f}ms {old:10.2f}ms {row['ratio']:7.2f}")
    options.out.parent.mkdir(parents=True, exist_ok=True)
    document = {"meta": {**harness.environment(), "runs": options.runs}, "results": results}
    options.out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {options.out}")


if __name__ == "__main__":
    main()
