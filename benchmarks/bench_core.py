"""Per-token overhead of ``l0.run`` (defaults: no guardrails, no drift) against raw iteration.

Both sides consume the same async generator of short string tokens in one process, interleaved,
and the median of several runs is reported. The raw side appends each token to a list and joins
at the end; L0 is measured through ``read()`` and through ``async for event in result``. The
output text must be identical. Results go to ``bench-results/core.json``.

Usage: ``python benchmarks/bench_core.py [--sizes 2000,20000,200000] [--runs 7]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import l0

TOKENS = ["tok", " en", "s ", "a", "re", " sh", "ort", "."]


async def source(n: int) -> AsyncIterator[str]:
    tokens = TOKENS
    width = len(tokens)
    for i in range(n):
        yield tokens[i % width]


async def raw(n: int) -> str:
    parts: list[str] = []
    async for token in source(n):
        parts.append(token)
    return "".join(parts)


async def l0_read(n: int) -> str:
    return await l0.run(lambda: source(n)).read()


async def l0_iterate(n: int) -> str:
    parts: list[str] = []
    async for event in l0.run(lambda: source(n)):
        if event.is_token:
            parts.append(event.text or "")
    return "".join(parts)


async def l0_checkpoints(n: int) -> str:
    result = l0.run(lambda: source(n), continue_from_last_good_token=True)
    return await result.read()


async def timed(fn: Callable[[int], Awaitable[str]], n: int) -> tuple[float, str]:
    gc.collect()
    start = time.perf_counter()
    text = await fn(n)
    return time.perf_counter() - start, text


async def measure(sizes: list[int], runs: int) -> dict[str, object]:
    contenders: dict[str, Callable[[int], Awaitable[str]]] = {
        "raw": raw,
        "l0_read": l0_read,
        "l0_iterate": l0_iterate,
        "l0_checkpoints": l0_checkpoints,
    }
    await l0_read(100)  # build the plugin manager and config cache outside the timings
    results: dict[str, object] = {}
    for n in sizes:
        samples: dict[str, list[float]] = {name: [] for name in contenders}
        expected = await raw(n)
        for _ in range(runs):
            for name, fn in contenders.items():  # interleaved, so drift hits all alike
                seconds, text = await timed(fn, n)
                if text != expected:
                    raise SystemExit(f"{name} produced different text at n={n}")
                samples[name].append(seconds)
        medians = {name: statistics.median(values) for name, values in samples.items()}
        row: dict[str, object] = {"tokens": n}
        for name, seconds in medians.items():
            row[name] = {
                "median_s": seconds,
                "tokens_per_s": n / seconds,
                "overhead_us_per_token": (seconds - medians["raw"]) / n * 1e6,
            }
        results[str(n)] = row
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="2000,20000,200000")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--out", default="bench-results/core.json")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results = asyncio.run(measure(sizes, args.runs))
    print(
        f"{'tokens':>8} {'contender':>14} {'median ms':>10} {'tok/s':>12} {'µs/token over raw':>18}"
    )
    for row in results.values():
        assert isinstance(row, dict)
        for name in ("raw", "l0_read", "l0_iterate", "l0_checkpoints"):
            cell = row[name]
            print(
                f"{row['tokens']:>8} {name:>14} {cell['median_s'] * 1e3:>10.2f} "
                f"{cell['tokens_per_s']:>12,.0f} {cell['overhead_us_per_token']:>18.3f}"
            )
    if len(sizes) >= 2:
        big, small = sizes[-1], sizes[-2]
        for name in ("raw", "l0_read", "l0_iterate", "l0_checkpoints"):
            a = results[str(big)][name]["median_s"]  # type: ignore[index]
            b = results[str(small)][name]["median_s"]  # type: ignore[index]
            print(f"growth {name} {big}/{small}: {a / b:.2f}x")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"python": sys.version, "machine": platform.machine(), "runs": args.runs}
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
