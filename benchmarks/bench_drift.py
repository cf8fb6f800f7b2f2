"""Per-token cost of ``drift=True`` against raw iteration, for prose and JSON output.

Both sides consume the same async generator of realistic tokens (about four characters each,
cut from a long prose answer or a long JSON document) in one process, interleaved, and the
median of several runs is reported. The drift side runs ``l0.run(..., drift=True)`` with the
default window, threshold and check interval, so the five standard detectors of ``l0-drift``
look at every stream; the texts are ordinary, so no drift may be reported and the output must
equal the raw text. ``l0_plain`` (no drift) is measured too, so drift's own share is visible.
Results go to ``bench-results/drift.json``.

Usage: ``python benchmarks/bench_drift.py [--sizes 2000,20000,200000] [--runs 5]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import re
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import l0

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


async def source(tokens: list[str]) -> AsyncIterator[str]:
    for token in tokens:
        yield token


async def raw(tokens: list[str]) -> str:
    parts: list[str] = []
    async for token in source(tokens):
        parts.append(token)
    return "".join(parts)


async def l0_plain(tokens: list[str]) -> str:
    return await l0.run(lambda: source(tokens)).read()


async def l0_drift(tokens: list[str]) -> str:
    return await l0.run(lambda: source(tokens), drift=True).read()


CONTENDERS: dict[str, Callable[[list[str]], Awaitable[str]]] = {
    "raw": raw,
    "l0_plain": l0_plain,
    "l0_drift": l0_drift,
}


async def timed(fn: Callable[[list[str]], Awaitable[str]], tokens: list[str]) -> tuple[float, str]:
    gc.collect()
    start = time.perf_counter()
    text = await fn(tokens)
    return time.perf_counter() - start, text


async def measure(sizes: list[int], runs: int) -> dict[str, object]:
    await l0_drift(make("prose", 500))  # build the plugin manager and detectors outside timings
    results: dict[str, object] = {}
    for kind in ("prose", "json"):
        rows: dict[str, object] = {}
        for n in sizes:
            tokens = make(kind, n)
            expected = "".join(tokens)
            samples: dict[str, list[float]] = {name: [] for name in CONTENDERS}
            for _ in range(runs):
                for name, fn in CONTENDERS.items():  # interleaved, so machine noise hits all
                    seconds, text = await timed(fn, tokens)
                    if text != expected:
                        raise SystemExit(f"{name} produced different text for {kind} n={n}")
                    samples[name].append(seconds)
            medians = {name: statistics.median(values) for name, values in samples.items()}
            row: dict[str, object] = {"tokens": n, "chars": len(expected)}
            for name, seconds in medians.items():
                row[name] = {
                    "median_s": seconds,
                    "overhead_us_per_token": (seconds - medians["raw"]) / n * 1e6,
                }
            row["drift_only_us_per_token"] = (medians["l0_drift"] - medians["l0_plain"]) / n * 1e6
            # The fastest run is less disturbed by other processes on a shared machine.
            best = {name: min(values) for name, values in samples.items()}
            row["drift_only_us_per_token_best"] = (best["l0_drift"] - best["l0_plain"]) / n * 1e6
            rows[str(n)] = row
        results[kind] = rows
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="2000,20000,200000")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", default="bench-results/drift.json")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results = asyncio.run(measure(sizes, args.runs))
    print(
        f"{'kind':>6} {'tokens':>8} {'contender':>10} {'median ms':>10} "
        f"{'µs/token over raw':>18} {'drift only µs/token (median, best)':>36}"
    )
    for kind, rows in results.items():
        assert isinstance(rows, dict)
        for row in rows.values():
            for name in CONTENDERS:
                cell = row[name]
                extra = (
                    f"{row['drift_only_us_per_token']:>27.3f}, "
                    f"{row['drift_only_us_per_token_best']:.3f}"
                    if name == "l0_drift"
                    else ""
                )
                print(
                    f"{kind:>6} {row['tokens']:>8} {name:>10} {cell['median_s'] * 1e3:>10.2f} "
                    f"{cell['overhead_us_per_token']:>18.3f} {extra}"
                )
        if len(sizes) >= 2:
            big, small = str(sizes[-1]), str(sizes[-2])
            for name in CONTENDERS:
                growth = rows[big][name]["median_s"] / rows[small][name]["median_s"]
                rows[f"growth_{name}"] = growth
                print(f"{kind:>6} growth {name} {big}/{small}: {growth:.2f}x")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"python": sys.version, "machine": platform.machine(), "runs": args.runs}
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
