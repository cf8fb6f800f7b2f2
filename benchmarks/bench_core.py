"""Per-token overhead of ``l0.run`` (defaults: no guardrails, no drift) against raw iteration.

Every contender consumes the same async generator of short string tokens in one process,
interleaved, and the median of several runs is reported:

* ``raw`` — append each token to a list, join at the end;
* ``l0_read`` — ``await l0.run(...).read()``;
* ``l0_iterate`` — ``async for event in l0.run(...)``, collecting the token events' text;
* ``l0_checkpoints`` — ``read()`` with ``continue_from_last_good_token=True``.

The output text must be identical. Times are this process's CPU time, and every timing covers
at least 200,000 tokens (shorter inputs are run several times in a row). Results go to
``bench-results/core.json``.

Usage: ``python benchmarks/bench_core.py [--sizes 2000,20000,200000] [--runs 7] [--out PATH]
[--clock cpu|wall] [--tokens-per-timing 200000]``
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import harness

import l0

TOKENS = ["tok", " en", "s ", "a", "re", " sh", "ort", "."]


async def source(n: int) -> AsyncIterator[str]:
    tokens = TOKENS
    width = len(tokens)
    for i in range(n):
        yield tokens[i % width]


def expected_text(n: int) -> str:
    return "".join(TOKENS[i % len(TOKENS)] for i in range(n))


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


CONTENDERS: dict[str, Callable[[int], Awaitable[str]]] = {
    "raw": raw,
    "l0_read": l0_read,
    "l0_iterate": l0_iterate,
    "l0_checkpoints": l0_checkpoints,
}


def main() -> None:
    options = harness.cli(
        __doc__,
        "bench-results/core.json",
        default_runs=7,
        default_clock="cpu",
        default_tokens_per_timing=200_000,
    )
    series = asyncio.run(
        harness.measure(
            CONTENDERS,
            options.sizes,
            options.runs,
            lambda n: n,
            expected_text,
            label="short",
            clock=options.clock,
            tokens_per_timing=options.tokens_per_timing,
        )
    )
    harness.print_table([series])
    meta = {
        "runs": options.runs,
        "sizes": options.sizes,
        "clock": options.clock,
        "tokens_per_timing": options.tokens_per_timing,
    }
    harness.write_results(options.out, [series], meta)


if __name__ == "__main__":
    main()
