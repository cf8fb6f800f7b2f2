"""Per-token cost of ``drift=True`` against raw iteration, for prose and JSON output.

Both sides consume the same async generator of realistic tokens (about four characters each,
cut from a long prose answer or a long JSON document) in one process, interleaved, and the
median of several runs is reported. The drift side runs ``l0.run(..., drift=True)`` with the
default window, threshold and check interval, so the five standard detectors of ``l0-drift``
look at every stream; the texts are ordinary, so no drift may be reported and the output must
equal the raw text. ``l0_plain`` (no drift) is measured too, so drift's own share is visible.
Times are this process's CPU time, and every timing covers at least 200,000 tokens (shorter
inputs are run several times in a row). Results go to ``bench-results/drift.json``.

Usage: ``python benchmarks/bench_drift.py [--sizes 2000,20000,200000] [--runs 5] [--out PATH]
[--clock cpu|wall] [--tokens-per-timing 200000]``
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
from collections.abc import Awaitable, Callable

import harness

import l0

KINDS = ("prose", "json")

SENTENCES = [
    "The committee reviewed the proposed budget for the coming year in considerable detail.",
    "Several members asked why maintenance costs had risen faster than expected since spring.",
    "The treasurer explained that the estimates now include a contingency reserve.",
    "Discussion then turned to the renovation of the library and its reading rooms.",
    "An architect presented three options with schedules and expected disruption.",
    "Most members favoured the intermediate plan, which replaces the heating system.",
    "Attendance at the riverside trails rose sharply during the previous summer.",
    "The parks department asked for four seasonal positions on a trial basis.",
]


def prose_text(chars: int) -> str:
    parts: list[str] = []
    size = 0
    i = 0
    while size < chars:
        # Sentence numbers keep the text from repeating exactly, as a real answer would not.
        sentence = f"{SENTENCES[i % len(SENTENCES)]} (note {i}) "
        parts.append(sentence)
        size += len(sentence)
        i += 1
    return "".join(parts)


def json_text(chars: int) -> str:
    records = []
    size = 0
    i = 0
    while size < chars:
        record = {
            "id": 10_000 + i,
            "name": f"user {i * 7919 % 100_003}",
            "email": f"u{i}@example.org",
            "score": round(i * 0.37 % 100, 2),
            "active": i % 3 != 0,
            "tags": ["beta" if i % 2 else "stable", f"tier-{i % 5}"],
        }
        encoded = json.dumps(record)
        records.append(encoded)
        size += len(encoded) + 2
        i += 1
    return '{"users": [' + ", ".join(records) + "]}"


def tokenize(text: str, n: int) -> list[str]:
    tokens = re.findall(r"\s?\S{1,4}|\s+", text)
    if len(tokens) < n:
        raise SystemExit("text too short")
    return tokens[:n]


def make(kind: str, n: int) -> list[str]:
    text = prose_text(n * 5) if kind == "prose" else json_text(n * 5)
    tokens = tokenize(text, n)
    if kind == "json":
        tokens.append("]}")  # keep the document whole: format drift watches JSON structure
    return tokens


source = harness.source
raw = harness.raw


async def l0_plain(tokens: list[str]) -> str:
    return await l0.run(lambda: source(tokens)).read()


async def l0_drift(tokens: list[str]) -> str:
    return await l0.run(lambda: source(tokens), drift=True).read()


CONTENDERS: dict[str, Callable[[list[str]], Awaitable[str]]] = {
    "raw": raw,
    "l0_plain": l0_plain,
    "l0_drift": l0_drift,
}


def expected_text(tokens: list[str]) -> str:
    return "".join(tokens)


def add_drift_only(series: harness.Series) -> None:
    """Drift's own share per token: ``l0_drift`` minus ``l0_plain`` (medians, and best runs)."""
    for row in series.rows:
        row.derived["drift_only_us_per_token"] = row.us_per_token_between("l0_drift", "l0_plain")
        row.derived["drift_only_us_per_token_best"] = row.us_per_token_between(
            "l0_drift", "l0_plain", best=True
        )


async def measure(options: harness.Options) -> list[harness.Series]:
    results: list[harness.Series] = []
    for kind in KINDS:
        series = await harness.measure(
            CONTENDERS,
            options.sizes,
            options.runs,
            functools.partial(make, kind),
            expected_text,
            label=kind,
            clock=options.clock,
            tokens_per_timing=options.tokens_per_timing,
        )
        add_drift_only(series)
        results.append(series)
    return results


def main() -> None:
    options = harness.cli(
        __doc__,
        "bench-results/drift.json",
        default_runs=5,
        default_clock="cpu",
        default_tokens_per_timing=200_000,
    )
    results = asyncio.run(measure(options))
    harness.print_table(results)
    meta = {
        "runs": options.runs,
        "sizes": options.sizes,
        "clock": options.clock,
        "tokens_per_timing": options.tokens_per_timing,
    }
    harness.write_results(options.out, results, meta)


if __name__ == "__main__":
    main()
