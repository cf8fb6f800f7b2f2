"""Per-token cost of a streaming race and a race against a single ``l0.run``.

Every contender consumes the same async generator of tokens in one process, interleaved, and
the median of several runs is reported. ``l0_plain`` reads one session and ``race`` reads the
same stream as the only contender of ``l0.race`` (the group machinery around one session).
``l0_iter`` iterates one session's events and ``race_stream`` iterates ``l0.race_stream`` with
one contender, whose events reach the consumer through a buffer (the session keeps running in
its own task so its timers stay armed).
Results go to ``bench-results/race.json``.

Usage: ``python benchmarks/bench_race.py [--sizes 2000,20000,200000] [--runs 5] [--out PATH]``
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import harness

import l0

source = harness.source
raw = harness.raw


def make(n: int) -> list[str]:
    return [f" w{i % 97}" for i in range(n)]


async def l0_plain(tokens: list[str]) -> str:
    return await l0.run(lambda: source(tokens)).read()


async def l0_iter(tokens: list[str]) -> str:
    parts: list[str] = []
    async for event in l0.run(lambda: source(tokens)):
        if event.is_token and event.text:
            parts.append(event.text)
    return "".join(parts)


async def race(tokens: list[str]) -> str:
    result = await l0.race([lambda: source(tokens)])
    return result.value


async def race_stream(tokens: list[str]) -> str:
    parts: list[str] = []
    async for event in l0.race_stream([lambda: source(tokens)]):
        if event.is_token and event.text:
            parts.append(event.text)
    return "".join(parts)


CONTENDERS: dict[str, Callable[[list[str]], Awaitable[str]]] = {
    "raw": raw,
    "l0_plain": l0_plain,
    "l0_iter": l0_iter,
    "race": race,
    "race_stream": race_stream,
}


async def measure(options: harness.Options) -> list[harness.Series]:
    series = await harness.measure(
        CONTENDERS, options.sizes, options.runs, make, "".join, label="race"
    )
    for row in series.rows:
        row.derived["race_minus_plain_us_per_token"] = row.us_per_token_between("race", "l0_plain")
        row.derived["race_stream_minus_iter_us_per_token"] = row.us_per_token_between(
            "race_stream", "l0_iter"
        )
    return [series]


def main() -> None:
    options = harness.cli(__doc__, "bench-results/race.json", default_runs=5)
    results = asyncio.run(measure(options))
    harness.print_table(results)
    harness.write_results(options.out, results, {"runs": options.runs, "sizes": options.sizes})


if __name__ == "__main__":
    main()
