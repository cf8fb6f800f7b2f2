"""Load and soak: many concurrent sessions through the real ``openai`` SDK, faults everywhere.

Each round starts ``sessions`` concurrent ``l0.run`` sessions against one
:class:`l0.testing.ChaosServer` running in a process of its own
(:mod:`tests.integration.soak_server`), so this process measures only the client. Every
session has its own model name, so its own script (:mod:`tests.integration.soak_plan`, built
from the seed on both sides): up to ``MAX_RETRIES + 1`` random faults (drops, stalls, 429 and
503 with a short Retry-After, zero output, malformed chunks, mid-stream error objects, a slow
first token), then its own answer. A session must end with exactly its answer, or with
``RetryExhaustedError`` after exactly the attempts its policy allows: when its faults outnumber
its retries, or when the machine was so slow that a timeout cut good answers too (then only a
timeout may have ended those attempts). Nothing else is accepted.

Between rounds and at the end, the process is checked for leaks: asyncio tasks, open file
descriptors and sockets, threads (not the event loop's bounded executor pool), and memory
(``sys.getallocatedblocks`` after a collection; later rounds may not grow it by more than 5%).

Run ``python -m tests.integration.soak [--sessions 1000] [--rounds 3] [--seed 1]
[--budget 165] [--transport native|sdk]`` (or ``nox -s soak``); it stops by itself after
``--budget`` seconds. ``tests/integration/test_soak.py`` runs a short version in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx2
import openai
from l0_openai import OpenAIAdapter

import l0
from l0.errors import RetryExhaustedError, StreamTimeoutError
from l0.testing import DEFAULT_TEXT
from tests.integration.soak_plan import MAX_RETRIES, SessionPlan, Timing, plans
from tests.integration.soak_server import ServerProcess

POLICY = l0.Retry(max_retries=MAX_RETRIES, attempts=MAX_RETRIES, base_delay=0.01, max_delay=0.05)
MESSAGES: Any = [{"role": "user", "content": "Say your line."}]


@dataclass
class Round:
    """What one round did."""

    sessions: int
    wall_s: float
    cpu_s: float
    server_cpu_s: float
    succeeded: int
    exhausted: int
    expected_exhausted: int
    cut_by_timeouts: int
    """Good answers a timeout cut because the machine was slow (each cost a retry)."""
    unclosed_generators: int
    """Async generators nobody closed, so the garbage collector's hook had to (no leak, but
    a stream that was not cleaned up when it ended)."""
    blocks: int
    problems: list[str] = field(default_factory=list)

    @property
    def sessions_per_s(self) -> float:
        """Sessions finished per second of wall time."""
        return self.sessions / self.wall_s

    @property
    def cpu_ms_per_session(self) -> float:
        """CPU time of the client process per session."""
        return self.cpu_s / self.sessions * 1e3


@dataclass
class Resources:
    """Counts that must not grow: tasks, file descriptors, sockets, threads."""

    tasks: int
    fds: int
    sockets: int
    threads: int

    @classmethod
    def now(cls) -> Resources:
        """Count them in this process, now."""
        fds = os.listdir("/proc/self/fd")
        sockets = 0
        for fd in fds:
            with contextlib.suppress(OSError):  # closed since listed
                sockets += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        try:
            tasks = len(asyncio.all_tasks()) - 1  # this coroutine's own task
        except RuntimeError:
            tasks = 0
        # The loop's default executor (DNS lookups run there) is a pool bounded by
        # min(32, CPUs + 4) whose threads stay for reuse: not a leak, so not counted.
        threads = sum(not t.name.startswith("asyncio_") for t in threading.enumerate())
        return cls(tasks, len(fds), sockets, threads)


async def _session(
    client: openai.AsyncOpenAI, plan: SessionPlan, limits: l0.Timeout, options: dict[str, Any]
) -> tuple[str, int]:
    """Run one session; return ``"ok"``, ``"exhausted"`` or what went wrong, and how many
    good answers a timeout cut."""
    model = plan.model
    result = l0.run(
        lambda: client.chat.completions.create(model=model, messages=MESSAGES, stream=True),
        retry=POLICY,
        timeout=limits,
        **options,
    )
    try:
        got = await result.read()
    except RetryExhaustedError as exc:
        if len(exc.errors) != MAX_RETRIES + 1:
            return f"{model}: gave up after {len(exc.errors)} attempts ({exc})", 0
        # A good answer can only fail by a timeout (a slow machine), and each scripted fault
        # fails at most one attempt. (Which attempt got which response is not known here: a
        # request cut before the server read it leaves the session's script where it was.)
        timeouts = sum(isinstance(failed.error, StreamTimeoutError) for failed in exc.errors)
        others = [
            failed.error
            for failed in exc.errors
            if not isinstance(failed.error, StreamTimeoutError)
        ]
        if len(others) > plan.scripted - plan.slow:
            return (
                f"{model}: {len(others)} errors not timeouts, {plan.scripted} faults: {others!r}",
                0,
            )
        return "exhausted", max(timeouts - plan.slow, 0)
    except Exception as exc:  # anything else is a bug
        return f"{model}: {type(exc).__name__}: {exc}", 0
    if got != plan.text:
        return f"{model}: wrong text {got!r} (expected {plan.text!r})", 0
    attempts = result.state.attempt
    if not plan.scripted < attempts <= MAX_RETRIES + 1:
        return f"{model}: answered at attempt {attempts} with {plan.scripted} faults first", 0
    return "ok", attempts - plan.scripted - 1


async def _warm_up(client: openai.AsyncOpenAI, limits: l0.Timeout, options: dict[str, Any]) -> str:
    """One session for an unscripted model (the server's default answer); "" when it worked."""
    result = l0.run(
        lambda: client.chat.completions.create(model="warm-up", messages=MESSAGES, stream=True),
        retry=POLICY,
        timeout=limits,
        **options,
    )
    try:
        got = await result.read()
    except Exception as exc:
        return f"warm-up: {type(exc).__name__}: {exc}"
    return "" if got == DEFAULT_TEXT else f"warm-up: wrong text {got!r}"


def _client(base_url: str, connections: int) -> openai.AsyncOpenAI:
    limits = httpx2.Limits(max_connections=connections, max_keepalive_connections=connections)
    http = openai.DefaultAsyncHttpxClient(limits=limits)
    # L0's timeouts are the ones under test; the SDK's 5 s connect timeout would trip first
    # on a machine this busy (the loop cannot finish a connect while it starts a thousand).
    timeout = httpx2.Timeout(600.0, connect=60.0)
    return openai.AsyncOpenAI(
        base_url=base_url, api_key="soak", max_retries=0, timeout=timeout, http_client=http
    )


async def _run_round(
    pool: list[openai.AsyncOpenAI],
    batch: list[SessionPlan],
    limits: l0.Timeout,
    options: dict[str, Any],
    deadline: float,
) -> list[tuple[str, int]]:
    tasks = [
        asyncio.ensure_future(_session(pool[i % len(pool)], plan, limits, options))
        for i, plan in enumerate(batch)
    ]
    try:
        async with asyncio.timeout(max(deadline - time.monotonic(), 0.0)):
            return await asyncio.gather(*tasks)
    except TimeoutError:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return [
            ("over the time budget", 0)
            if t.cancelled() or t.exception() is not None
            else t.result()
            for t in tasks
        ]


async def soak(
    sessions: int,
    rounds: int,
    seed: int,
    *,
    verbose: bool = True,
    budget: float = 165.0,
    timing: Timing | None = None,
    transport: str = "native",
    clients: int = 10,
) -> list[Round]:
    """Run the soak; return one :class:`Round` per round; what went wrong is in ``problems``.

    ``budget`` bounds the whole run in seconds: a round still running then is cancelled
    (its sessions closed) and reported as a problem, and no further round starts.
    ``transport`` is the OpenAI adapter's (``"native"`` or ``"sdk"``); ``clients`` is how
    many ``AsyncOpenAI`` clients (each with its own connection pool) share the sessions.

    Raises:
        RuntimeError: The server process did not start.
    """
    deadline = time.monotonic() + budget
    timing = timing or Timing()
    limits = l0.Timeout(initial_token=timing.initial_token, inter_token=timing.inter_token)
    # The native transport is the default: sessions find the adapter as users' sessions do.
    options: dict[str, Any] = {}
    if transport != "native":
        options["adapter"] = OpenAIAdapter(transport=transport)
    gc.collect()
    before = Resources.now()
    results: list[Round] = []
    with (
        _counting_unclosed_generators() as unclosed,
        ServerProcess(seed, sessions, rounds, timing) as server,
    ):
        per_client = -(-sessions // clients) + 10
        pool = [_client(server.base_url, per_client) for _ in range(clients)]
        # One plain session per client first: imports and first-use costs (plugins, the SDK's
        # lazy modules) then stay out of round 1's numbers and timeouts.
        warm = await asyncio.gather(*(_warm_up(client, limits, options) for client in pool))
        results_problems = [problem for problem in warm if problem]
        for number, batch in enumerate(plans(seed, sessions, rounds, timing)):
            expected_exhausted = sum(plan.must_exhaust for plan in batch)
            gc.collect()
            cpu, wall, server_cpu = time.process_time(), time.perf_counter(), server.cpu_seconds()
            unclosed[0] = 0
            outcomes = await _run_round(pool, batch, limits, options, deadline)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            server_cpu = server.cpu_seconds() - server_cpu
            del batch
            await _settle()
            kinds = [kind for kind, _ in outcomes]
            found = [kind for kind in kinds if kind not in ("ok", "exhausted")]
            record = Round(
                sessions=sessions,
                wall_s=wall,
                cpu_s=cpu,
                server_cpu_s=server_cpu,
                succeeded=kinds.count("ok"),
                exhausted=kinds.count("exhausted"),
                expected_exhausted=expected_exhausted,
                cut_by_timeouts=sum(cut for _, cut in outcomes),
                unclosed_generators=unclosed[0],
                blocks=sys.getallocatedblocks(),
                problems=found,
            )
            record.problems[:0] = results_problems
            results_problems = []
            results.append(record)
            if verbose:
                _print_round(number, record)
            if time.monotonic() >= deadline:
                record.problems.append(f"the soak ran out of its {budget:.0f} s budget")
                break
        for client in pool:
            await client.close()
    await _settle()
    after = Resources.now()
    leaks = [
        f"{name}: {getattr(before, name)} before, {getattr(after, name)} after"
        for name in ("tasks", "fds", "sockets", "threads")
        if getattr(after, name) > getattr(before, name)
    ]
    if leaks:
        results[-1].problems.append("leaks: " + "; ".join(leaks))
    first = results[0].blocks
    for record in results[1:]:
        if record.blocks > first * 1.05:
            record.problems.append(
                f"memory grew: {record.blocks} blocks after this round, {first} after the first"
            )
    if verbose:
        print(f"resources before {before}, after {after}")
    return results


@contextlib.contextmanager
def _counting_unclosed_generators() -> Iterator[list[int]]:
    """Count, in the yielded one-item list, async generators the collector had to close."""
    count = [0]
    hooks = sys.get_asyncgen_hooks()
    finalizer = hooks.finalizer
    if finalizer is None:  # no event loop hook to wrap
        yield count
        return

    def counting(generator: Any) -> None:
        count[0] += 1
        finalizer(generator)

    sys.set_asyncgen_hooks(firstiter=hooks.firstiter, finalizer=counting)
    try:
        yield count
    finally:
        sys.set_asyncgen_hooks(firstiter=hooks.firstiter, finalizer=finalizer)


async def _settle() -> None:
    """Collect garbage and let the loop run what that scheduled, so only live objects count.

    Async generators the collector finds unclosed are closed by callbacks it schedules on the
    loop (and closed transports finish in callbacks too): counted before those ran, they
    would look like growth.
    """
    for _ in range(3):
        gc.collect()
        await asyncio.sleep(0.1)
    gc.collect()


def _print_round(number: int, record: Round) -> None:
    server_ms = record.server_cpu_s / record.sessions * 1e3
    print(
        f"round {number + 1}: {record.sessions} sessions in {record.wall_s:.1f} s "
        f"({record.sessions_per_s:.1f}/s); CPU per session {record.cpu_ms_per_session:.2f} ms "
        f"client, {server_ms:.2f} ms server; {record.succeeded} answered, {record.exhausted} "
        f"exhausted their retries ({record.expected_exhausted} scripted to); "
        f"{record.cut_by_timeouts} good answers cut by a timeout; "
        f"{record.unclosed_generators} async generators closed by the GC; "
        f"{len(record.problems)} problems; {record.blocks} memory blocks",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--budget", type=float, default=165.0, help="seconds for the whole run")
    parser.add_argument("--transport", choices=["native", "sdk"], default="native")
    parser.add_argument("--clients", type=int, default=10)
    defaults = Timing()
    parser.add_argument("--initial-token", type=float, default=defaults.initial_token)
    parser.add_argument("--inter-token", type=float, default=defaults.inter_token)
    args = parser.parse_args()
    timing = Timing(initial_token=args.initial_token, inter_token=args.inter_token)
    start = time.monotonic()
    results = asyncio.run(
        soak(
            args.sessions,
            args.rounds,
            args.seed,
            budget=args.budget,
            timing=timing,
            transport=args.transport,
            clients=args.clients,
        )
    )
    problems = [p for r in results for p in r.problems]
    for problem in problems[:20]:
        print("PROBLEM", problem)
    print(f"soak finished in {time.monotonic() - start:.0f} s with {len(problems)} problems")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
