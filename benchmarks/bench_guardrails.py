"""Per-token cost of guardrails over raw iteration, for prose and for JSON output.

Contenders, each consuming the same pre-built token list through an async generator, in one
process, interleaved, median of several runs:

* ``raw`` — append each token to a list, join at the end;
* ``json`` — ``l0.run(..., guardrails=[l0.json_rule()]).read()``;
* ``recommended`` — ``guardrails=l0.Guardrails.recommended()``;
* ``full`` — every standard rule (the ``strict`` preset) plus ``drift=True`` (when the
  ``l0-drift`` plugin is installed) and ``continue_from_last_good_token=True``.

The token streams are seeded pseudo-random words (and JSON objects built from them), so no rule
fires: the repetition rule would rightly flag a stream that cycles through a few tokens. Every
contender must return the raw text. Results go to ``bench-results/guardrails.json``.

Usage: ``python benchmarks/bench_guardrails.py [--sizes 2000,20000,200000] [--runs 5]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import random
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import l0

WORDS = [
    "river",
    "stone",
    "light",
    "garden",
    "market",
    "signal",
    "window",
    "paper",
    "orange",
    "winter",
    "quiet",
    "bridge",
    "network",
    "pattern",
    "silver",
    "engine",
    "harbor",
    "forest",
    "morning",
    "number",
    "yellow",
    "planet",
    "theory",
    "voice",
    "summer",
    "letter",
    "island",
    "camera",
    "shadow",
    "thunder",
    "coffee",
    "circle",
]
CONTENTS = ("text", "json")
CONTENDERS = ("raw", "json", "recommended", "full")


def text_tokens(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    tokens = []
    for i in range(n):
        word = rng.choice(WORDS)
        if i % 13 == 12:
            tokens.append(word + ".")
        elif i % 97 == 96:
            tokens.append("\n\n")
        else:
            tokens.append(" " + word)
    return tokens


def json_tokens(n: int, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    tokens = ["["]
    i = 0
    while len(tokens) < n - 1:
        word = rng.choice(WORDS)
        tokens += [
            "{" if i == 0 else ", {",
            '"id"',
            f": {rng.randrange(10**6)}",
            ', "w": "',
            word,
            f" {rng.choice(WORDS)}",
            '\\"',
            '", "n": [',
            f"{rng.random():.3f}",
            "]}",
        ]
        i += 1
    tokens = tokens[: n - 1]
    # Close whatever is open so the document is valid (cut mid-object at the size limit).
    text = "".join(tokens)
    closing = _closers(text)
    tokens.append(closing or " ")
    return tokens


def _closers(text: str) -> str:
    stack: list[str] = []
    in_string = escape = False
    for char in text:
        if in_string:
            if escape:
                escape = False
            elif char == "\\":
                escape = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            stack.append("}" if char == "{" else "]")
        elif char in "}]":
            stack.pop()
    return ('"' if in_string else "") + "".join(reversed(stack))


async def source(tokens: list[str]) -> AsyncIterator[str]:
    for token in tokens:
        yield token


async def raw(tokens: list[str]) -> str:
    parts: list[str] = []
    async for token in source(tokens):
        parts.append(token)
    return "".join(parts)


def _drift_available() -> bool:
    try:
        l0.run(lambda: source(["x"]), drift=True)
    except Exception:
        return False
    return True


def make_contenders(drift: bool) -> dict[str, Callable[[list[str]], Awaitable[str]]]:
    json_only = [l0.json_rule()]
    recommended = l0.Guardrails.recommended()
    strict = l0.Guardrails.strict()
    extra: dict[str, Any] = {"drift": True} if drift else {}

    async def with_json(tokens: list[str]) -> str:
        return await l0.run(lambda: source(tokens), guardrails=json_only).read()

    async def with_recommended(tokens: list[str]) -> str:
        return await l0.run(lambda: source(tokens), guardrails=recommended).read()

    async def full(tokens: list[str]) -> str:
        result = l0.run(
            lambda: source(tokens),
            guardrails=strict,
            continue_from_last_good_token=True,
            **extra,
        )
        return await result.read()

    return {"raw": raw, "json": with_json, "recommended": with_recommended, "full": full}


async def timed(fn: Callable[[list[str]], Awaitable[str]], tokens: list[str]) -> tuple[float, str]:
    gc.collect()
    start = time.perf_counter()
    text = await fn(tokens)
    return time.perf_counter() - start, text


async def measure(sizes: list[int], runs: int, drift: bool) -> dict[str, Any]:
    contenders = make_contenders(drift)
    results: dict[str, Any] = {}
    for kind in CONTENTS:
        for n in sizes:
            tokens = text_tokens(n) if kind == "text" else json_tokens(n)
            expected = "".join(tokens)
            if kind == "json":
                json.loads(expected)
            samples: dict[str, list[float]] = {name: [] for name in contenders}
            for _ in range(runs):
                for name, fn in contenders.items():  # interleaved, so drift hits all alike
                    seconds, text = await timed(fn, tokens)
                    if text != expected:
                        raise SystemExit(f"{name} produced different text ({kind}, n={n})")
                    samples[name].append(seconds)
            medians = {name: statistics.median(values) for name, values in samples.items()}
            row: dict[str, Any] = {"content": kind, "tokens": n}
            for name, seconds in medians.items():
                row[name] = {
                    "median_s": seconds,
                    "tokens_per_s": n / seconds,
                    "overhead_us_per_token": (seconds - medians["raw"]) / n * 1e6,
                }
            results[f"{kind}/{n}"] = row
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="2000,20000,200000")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", default="bench-results/guardrails.json")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    drift = _drift_available()
    results = asyncio.run(measure(sizes, args.runs, drift))
    print(f"full stack includes drift: {drift}")
    print(
        f"{'content':>7} {'tokens':>8} {'contender':>12} {'median ms':>10} {'tok/s':>12} "
        f"{'µs/token over raw':>18}"
    )
    for row in results.values():
        for name in CONTENDERS:
            cell = row[name]
            print(
                f"{row['content']:>7} {row['tokens']:>8} {name:>12} "
                f"{cell['median_s'] * 1e3:>10.2f} {cell['tokens_per_s']:>12,.0f} "
                f"{cell['overhead_us_per_token']:>18.3f}"
            )
    growth: dict[str, float] = {}
    if len(sizes) >= 2:
        big, small = sizes[-1], sizes[-2]
        for kind in CONTENTS:
            for name in CONTENDERS:
                a = results[f"{kind}/{big}"][name]["median_s"]
                b = results[f"{kind}/{small}"][name]["median_s"]
                growth[f"{kind}/{name}"] = a / b
                print(f"growth {kind:>4} {name:>12} {big}/{small}: {a / b:.2f}x")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "python": sys.version,
        "machine": platform.machine(),
        "runs": args.runs,
        "full_includes_drift": drift,
    }
    out.write_text(json.dumps({"meta": meta, "results": results, "growth": growth}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
