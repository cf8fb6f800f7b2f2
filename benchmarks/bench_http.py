"""Streaming over real HTTP: the raw ``openai`` SDK against ``l0.run`` and ``l0.wrap``.

A loopback server in its own process (``sse_server.py``) writes pre-rendered chat-completion
SSE as fast as it can, so the client's work is what is measured. Sections:

* ``http`` — one answer at a time, long (20,000 chunks) and short (50 chunks); contenders:
  ``raw`` (the SDK alone, ``async for chunk in stream``), ``run_native`` / ``run_sdk``
  (``l0.run`` over a factory of ``client.chat.completions.create(stream=True)``, with L0's
  SSE parser or the SDK's iterator), ``wrap_native`` / ``wrap_sdk`` (``l0.wrap(client)``),
  and ``litellm`` (``litellm.acompletion(stream=True)`` alone, for its per-chunk cost);
* ``concurrent`` — ``--sessions`` answers of ``--chunks`` chunks at once: wall time, CPU
  seconds per session and peak traced memory (``tracemalloc``, measured in separate runs so
  tracing does not slow the timed ones), raw SDK against ``l0.run`` (native);
* ``setup`` — ``l0.run`` over a 3-token string stream against a bare ``async for``, per call.

Every contender must return the exact text on every run. Medians of interleaved runs; results
go to ``bench-results/http.json``.

Usage: ``python benchmarks/bench_http.py [--sizes 50,20000] [--runs 5] [--sessions 500]
[--chunks 200] [--no-litellm]``
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import statistics
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import harness
import openai
import sse_server
from l0_openai import OpenAIAdapter

import l0

MESSAGES: Any = [{"role": "user", "content": "Say it."}]
SDK = OpenAIAdapter(transport="sdk")


def contenders(url: str, litellm: bool) -> dict[str, Callable[[int], Awaitable[str]]]:
    client = openai.AsyncOpenAI(base_url=url, api_key="bench", max_retries=0, timeout=600)
    wrapped = l0.wrap(client)
    wrapped_sdk = l0.wrap(client, transport="sdk")

    def create(n: int) -> Any:
        return client.chat.completions.create(model=f"n{n}", messages=MESSAGES, stream=True)

    async def raw(n: int) -> str:
        parts = []
        async for chunk in await create(n):
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
        return "".join(parts)

    async def run_native(n: int) -> str:
        return await l0.run(lambda: create(n)).read()

    async def run_sdk(n: int) -> str:
        return await l0.run(lambda: create(n), adapter=SDK).read()

    async def wrap_native(n: int) -> str:
        call = wrapped.chat.completions.create
        text: str = await call(model=f"n{n}", messages=MESSAGES, stream=True).read()
        return text

    async def wrap_sdk(n: int) -> str:
        call = wrapped_sdk.chat.completions.create
        text: str = await call(model=f"n{n}", messages=MESSAGES, stream=True).read()
        return text

    found: dict[str, Callable[[int], Awaitable[str]]] = {
        "raw": raw,
        "run_native": run_native,
        "run_sdk": run_sdk,
        "wrap_native": wrap_native,
        "wrap_sdk": wrap_sdk,
    }
    if litellm:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import litellm as lite

        async def litellm_raw(n: int) -> str:
            stream = await lite.acompletion(
                model=f"openai/n{n}", api_base=url, api_key="bench", messages=MESSAGES, stream=True
            )
            parts = []
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    parts.append(chunk.choices[0].delta.content)
            return "".join(parts)

        found["litellm"] = litellm_raw
    return found


async def concurrent(url: str, sessions: int, chunks: int, runs: int) -> dict[str, Any]:
    """N sessions at once: wall, CPU per session, peak traced memory; raw SDK against L0."""
    limits = openai.DefaultAsyncHttpxClient(
        limits=__import__("httpx2").Limits(max_connections=sessions + 10)
    )
    # A generous timeout: a CPU-bound client reaches new connections late (connect timeouts).
    client = openai.AsyncOpenAI(
        base_url=url, api_key="bench", max_retries=0, http_client=limits, timeout=600
    )
    expected = sse_server.expected(chunks)

    def create() -> Any:
        return client.chat.completions.create(model=f"n{chunks}", messages=MESSAGES, stream=True)

    async def raw_one() -> str:
        parts = []
        async for chunk in await create():
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
        return "".join(parts)

    async def l0_one() -> str:
        return await l0.run(create).read()

    async def wrap_one() -> str:
        return await l0.run(create, adapter=SDK).read()

    kinds = {"raw": raw_one, "run_native": l0_one, "run_sdk": wrap_one}

    async def many(fn: Callable[[], Awaitable[str]]) -> tuple[float, float]:
        gc.collect()
        cpu, wall = time.process_time(), time.perf_counter()
        texts = await asyncio.gather(*(fn() for _ in range(sessions)))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if any(text != expected for text in texts):
            raise SystemExit("a concurrent session produced different text")
        return wall, cpu

    for fn in kinds.values():  # warm-up: connections, plugin managers, caches
        await many(fn)
    walls: dict[str, list[float]] = {k: [] for k in kinds}
    cpus: dict[str, list[float]] = {k: [] for k in kinds}
    peaks: dict[str, list[int]] = {k: [] for k in kinds}
    for _ in range(runs):
        for name, fn in kinds.items():
            wall, cpu = await many(fn)
            walls[name].append(wall)
            cpus[name].append(cpu)
    for _ in range(max(1, runs // 2)):
        for name, fn in kinds.items():
            gc.collect()
            tracemalloc.start()
            await many(fn)
            peaks[name].append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
    await client.close()
    out: dict[str, Any] = {"sessions": sessions, "chunks": chunks}
    for name in kinds:
        out[name] = {
            "wall_s": statistics.median(walls[name]),
            "cpu_ms_per_session": statistics.median(cpus[name]) / sessions * 1e3,
            "peak_traced_mib": statistics.median(peaks[name]) / 2**20,
            "walls_s": walls[name],
        }
    for name in kinds:
        if name != "raw":
            out[f"{name}_wall_ratio"] = out[name]["wall_s"] / out["raw"]["wall_s"]
            out[f"{name}_memory_ratio"] = (
                out[name]["peak_traced_mib"] / out["raw"]["peak_traced_mib"]
            )
    return out


async def _three() -> AsyncIterator[str]:
    yield "a"
    yield "b"
    yield "c"


async def setup_cost(calls: int, runs: int) -> dict[str, Any]:
    """Per-call time of ``l0.run`` over a 3-token stream, against a bare loop."""

    async def bare() -> None:
        for _ in range(calls):
            parts = [token async for token in _three()]
            "".join(parts)

    async def with_l0() -> None:
        for _ in range(calls):
            await l0.run(_three).read()

    kinds = {"bare": bare, "l0_run": with_l0}
    for fn in kinds.values():
        await fn()
    samples: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(runs):
        for name, fn in kinds.items():
            gc.collect()
            start = time.perf_counter()
            await fn()
            samples[name].append((time.perf_counter() - start) / calls * 1e6)
    out = {name: statistics.median(values) for name, values in samples.items()}
    return {"us_per_call": out, "calls": calls, "runs_us": samples}


def _flag(name: str, default: int) -> int:
    if name in sys.argv:
        at = sys.argv.index(name)
        value = int(sys.argv[at + 1])
        del sys.argv[at : at + 2]
        return value
    return default


def main() -> None:
    sessions = _flag("--sessions", 500)
    chunks = _flag("--chunks", 200)
    litellm = "--no-litellm" not in sys.argv
    if not litellm:
        sys.argv.remove("--no-litellm")
    options = harness.cli(__doc__, "bench-results/http.json", default_sizes="50,20000")
    url, server = sse_server.start()

    async def everything() -> tuple[harness.Series, dict[str, Any], dict[str, Any]]:
        series = await harness.measure(
            contenders(url, litellm),
            options.sizes,
            options.runs,
            lambda n: n,
            sse_server.expected,
            label="http",
        )
        harness.print_table([series])
        crowd = await concurrent(url, sessions, chunks, options.runs)
        setup = await setup_cost(2000, options.runs)
        return series, crowd, setup

    try:
        series, crowd, setup = asyncio.run(everything())
    finally:
        sse_server.stop(server)
    for row in series.rows:
        raw = row.cells["raw"].median_s
        ratios = {k: round(c.median_s / raw, 3) for k, c in row.cells.items()}
        print(f"http {row.tokens:>6} chunks, time / raw SDK: {ratios}")
    print("concurrent:", json.dumps({k: v for k, v in crowd.items()}, default=str))
    print("setup µs per call:", setup["us_per_call"])
    harness.write_results(
        options.out,
        [series],
        {"runs": options.runs, "sizes": options.sizes, "concurrent": crowd, "setup": setup},
    )


if __name__ == "__main__":
    os.chdir(Path(__file__).resolve().parent.parent)
    main()
