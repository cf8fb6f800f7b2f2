"""Per-token cost of guardrails over raw iteration, for prose and for JSON output.

Contenders, each consuming the same pre-built token list through an async generator, in one
process, interleaved, median of several runs:

* ``raw`` — append each token to a list, join at the end;
* ``core`` — ``l0.run(...).read()`` with its defaults (no guardrails, no drift);
* ``json`` — ``l0.run(..., guardrails=[l0.json_rule()]).read()``;
* ``recommended`` — ``guardrails=l0.Guardrails.recommended()``;
* ``full`` — every standard rule (the ``strict`` preset) plus ``drift=True`` (when the
  ``l0-drift`` plugin is installed) and ``continue_from_last_good_token=True``.

The token streams are seeded pseudo-random words (and JSON objects built from them), so no rule
fires: the repetition rule would rightly flag a stream that cycles through a few tokens. Every
contender must return the raw text. Times are this process's CPU time, and every timing covers
at least 200,000 tokens (shorter inputs are run several times in a row), so that the growth
from 20,000 to 200,000 tokens is measured over equally long timings. Results go to
``bench-results/guardrails.json``.

Usage: ``python benchmarks/bench_guardrails.py [--sizes 20000,200000] [--runs 7] [--out PATH]
[--clock cpu|wall] [--tokens-per-timing 200000]``
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from typing import Any

import harness

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


source = harness.source
raw = harness.raw


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

    async def core(tokens: list[str]) -> str:
        return await l0.run(lambda: source(tokens)).read()

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

    return {
        "raw": raw,
        "core": core,
        "json": with_json,
        "recommended": with_recommended,
        "full": full,
    }


def expected_text(tokens: list[str]) -> str:
    return "".join(tokens)


def expected_json(tokens: list[str]) -> str:
    text = "".join(tokens)
    json.loads(text)  # the JSON stream must be a valid document, or json_rule would fire
    return text


async def measure(options: harness.Options, drift: bool) -> list[harness.Series]:
    contenders = make_contenders(drift)
    return [
        await harness.measure(
            contenders,
            options.sizes,
            options.runs,
            text_tokens,
            expected_text,
            label="text",
            clock=options.clock,
            tokens_per_timing=options.tokens_per_timing,
        ),
        await harness.measure(
            contenders,
            options.sizes,
            options.runs,
            json_tokens,
            expected_json,
            label="json",
            clock=options.clock,
            tokens_per_timing=options.tokens_per_timing,
        ),
    ]


def main() -> None:
    options = harness.cli(
        __doc__,
        "bench-results/guardrails.json",
        default_runs=7,
        default_sizes="20000,200000",
        default_clock="cpu",
        default_tokens_per_timing=200_000,
    )
    drift = _drift_available()
    print(f"full stack includes drift: {drift}")
    results = asyncio.run(measure(options, drift))
    harness.print_table(results)
    meta = {
        "runs": options.runs,
        "sizes": options.sizes,
        "clock": options.clock,
        "tokens_per_timing": options.tokens_per_timing,
        "full_includes_drift": drift,
    }
    harness.write_results(options.out, results, meta)


if __name__ == "__main__":
    main()
