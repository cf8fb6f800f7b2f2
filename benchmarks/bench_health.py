"""Session cost of provider health: short sessions with and without a provider key.

Both sides run ``l0.run`` over the same three-token async generator in one process,
interleaved, and the median of several runs is reported. ``off`` has no provider key (health
is skipped entirely); ``on`` has ``provider="bench"`` with the in-process store, so every
session is admitted and its outcome recorded. The difference is what health adds per session
(admission, outcome; never anything per token). Results go to ``bench-results/health.json``.

Usage: ``python benchmarks/bench_health.py [--sessions 2000] [--runs 7]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path

import l0

TOKENS = ("Hello", " there", ".")


async def tokens() -> AsyncIterator[str]:
    for token in TOKENS:
        yield token


async def sessions(n: int, pm: l0.L0PluginManager, provider: str | None) -> float:
    started = time.perf_counter()
    for _ in range(n):
        text = await l0.run(tokens, plugins=pm, provider=provider).read()
        assert text == "Hello there."
    return time.perf_counter() - started


async def main(n: int, runs: int) -> dict[str, float]:
    pm = l0.build_plugin_manager(entry_points=False)
    await sessions(200, pm, None)  # warm up both paths
    await sessions(200, pm, "bench")
    off: list[float] = []
    on: list[float] = []
    for _ in range(runs):
        off.append(await sessions(n, pm, None))
        on.append(await sessions(n, pm, "bench"))
    off_us = statistics.median(off) / n * 1e6
    on_us = statistics.median(on) / n * 1e6
    return {"off_us_per_session": off_us, "on_us_per_session": on_us, "ratio": on_us / off_us}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=7)
    args, _ = parser.parse_known_args()  # nox -s bench passes the same options to every bench
    result = asyncio.run(main(args.sessions, args.runs))
    print(
        f"session with health off: {result['off_us_per_session']:.1f} us, "
        f"on (in-process store): {result['on_us_per_session']:.1f} us, "
        f"ratio {result['ratio']:.3f}"
    )
    out = Path("bench-results")
    out.mkdir(exist_ok=True)
    (out / "health.json").write_text(json.dumps(result, indent=1) + "\n")
