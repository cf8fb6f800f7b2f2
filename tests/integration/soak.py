"""Load and soak: many concurrent sessions through the real ``openai`` SDK, faults everywhere.

Each round starts ``sessions`` concurrent ``l0.run`` sessions against one
:class:`l0.testing.ChaosServer`. Every session has its own model name, so its own script: up
to ``max_retries + 1`` random faults (drops, stalls, 429 and 503 with a short Retry-After, zero
output, malformed chunks, mid-stream error objects, a slow first token), then its own answer.
A session must end with exactly its answer, or, when its faults outnumber its retries (or the
machine was so slow that a timeout fired on a good answer), with ``RetryExhaustedError``
after exactly the attempts its policy allows. Nothing else is accepted.

Between rounds and at the end, the process is checked for leaks: asyncio tasks, open file
descriptors and sockets, threads (not the event loop's bounded executor pool), and memory
(``sys.getallocatedblocks`` after a collection; later rounds may not grow it by more than 5%).

Run ``python -m tests.integration.soak [--sessions 1000] [--rounds 3] [--seed 1]
[--budget 170]`` (or ``nox -s soak``); it stops by itself after ``--budget`` seconds.
``tests/integration/test_soak.py`` runs a short version in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import random
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import openai

import l0
from l0.errors import RetryExhaustedError
from l0.testing import ChaosServer, Fault, split_words

MAX_RETRIES = 3
POLICY = l0.Retry(max_retries=MAX_RETRIES, attempts=MAX_RETRIES, base_delay=0.01, max_delay=0.05)
# Generous: under a thousand concurrent sessions a good answer may be slow to start.
TIMEOUT = l0.Timeout(initial_token=20.0, inter_token=8.0)
MESSAGES: Any = [{"role": "user", "content": "Say your line."}]


def _faults(rng: random.Random, text: str) -> list[Fault]:
    """Random faults for one session (at most one that waits for a timeout), then the answer."""
    count = rng.choices([0, 1, 2, 3, 4], weights=[30, 30, 20, 12, 8])[0]
    words = len(split_words(text))
    quick = [
        lambda: Fault.drop_after(rng.randrange(words), text=text),
        lambda: Fault.status(429, headers={"retry-after-ms": "20"}),
        lambda: Fault.status(503, headers={"Retry-After": "0"}),
        lambda: Fault.zero_output(),  # noqa: PLW0108 (a list of zero-argument lambdas)
        lambda: Fault.malformed_sse(rng.randrange(words), text=text),
        lambda: Fault.stream_error(rng.randrange(words), text=text),
    ]
    slow = [
        lambda: Fault.stall_after(rng.randrange(1, words), seconds=60, text=text),
        lambda: Fault.slow_first_token(60, text=text),
    ]
    faults = [rng.choice(quick)() for _ in range(count)]
    if faults and rng.random() < 0.15:
        faults[rng.randrange(len(faults))] = rng.choice(slow)()
    # A slow first token that stays within the limit is no fault: the answer must arrive.
    answer = Fault.slow_first_token(0.2, text=text) if rng.random() < 0.1 else Fault.ok(text)
    # The answer again for every retry left: a timeout on a busy machine may cost the session
    # a good answer, and the retry must get this session's text, not the server's default.
    return [*faults, answer, *[Fault.ok(text)] * MAX_RETRIES]


@dataclass
class Round:
    """What one round did."""

    sessions: int
    wall_s: float
    cpu_s: float
    succeeded: int
    exhausted: int
    expected_exhausted: int
    blocks: int
    problems: list[str] = field(default_factory=list)

    @property
    def sessions_per_s(self) -> float:
        """Sessions finished per second of wall time."""
        return self.sessions / self.wall_s

    @property
    def cpu_ms_per_session(self) -> float:
        """CPU time of the whole process (client and in-process server) per session."""
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


async def _session(client: openai.AsyncOpenAI, model: str, text: str) -> str:
    """Run one session; return ``"ok"``, ``"exhausted"``, or what went wrong."""
    result = l0.run(
        lambda: client.chat.completions.create(model=model, messages=MESSAGES, stream=True),
        retry=POLICY,
        timeout=TIMEOUT,
    )
    try:
        got = await result.read()
    except RetryExhaustedError as exc:
        if len(exc.errors) != MAX_RETRIES + 1:
            return f"{model}: gave up after {len(exc.errors)} attempts ({exc})"
        return "exhausted"
    except Exception as exc:  # anything else is a bug
        return f"{model}: {type(exc).__name__}: {exc}"
    if got != text:
        return f"{model}: wrong text {got!r} (expected {text!r})"
    return "ok"


async def soak(
    sessions: int, rounds: int, seed: int, *, verbose: bool = True, budget: float = 170.0
) -> list[Round]:
    """Run the soak; return one :class:`Round` per round. Raises nothing: read ``problems``.

    ``budget`` bounds the whole run in seconds: a round still running then is cancelled
    (its sessions closed) and reported as a problem, and no further round starts.
    """
    rng = random.Random(seed)
    deadline = time.monotonic() + budget
    gc.collect()
    before = Resources.now()
    results: list[Round] = []
    async with ChaosServer() as server:
        http = openai.DefaultAsyncHttpxClient(
            limits=__import__("httpx2").Limits(
                max_connections=sessions + 50, max_keepalive_connections=sessions + 50
            )
        )
        client = openai.AsyncOpenAI(
            base_url=server.base_url, api_key="soak", max_retries=0, http_client=http
        )
        for number in range(rounds):
            plans = []
            for i in range(sessions):
                model = f"soak-{number}-{i}"
                text = f"Session {number}-{i} says: the quick brown fox jumps {i % 97} times."
                faults = _faults(rng, text)
                server.set_script(faults, model=model)
                plans.append((model, text, len(faults) - 1 - MAX_RETRIES))
            gc.collect()
            cpu, wall = time.process_time(), time.perf_counter()
            tasks = [
                asyncio.ensure_future(_session(client, model, text)) for model, text, _ in plans
            ]
            try:
                async with asyncio.timeout(max(deadline - time.monotonic(), 0.0)):
                    outcomes = await asyncio.gather(*tasks)
            except TimeoutError:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                outcomes = [
                    "over the time budget"
                    if t.cancelled() or t.exception() is not None
                    else t.result()
                    for t in tasks
                ]
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            server.reset()
            gc.collect()
            found = [p for p in outcomes if p not in ("ok", "exhausted")]
            expected_exhausted = sum(faults > MAX_RETRIES for _, _, faults in plans)
            record = Round(
                sessions=sessions,
                wall_s=wall,
                cpu_s=cpu,
                succeeded=outcomes.count("ok"),
                exhausted=outcomes.count("exhausted"),
                expected_exhausted=expected_exhausted,
                blocks=sys.getallocatedblocks(),
                problems=found,
            )
            results.append(record)
            if time.monotonic() >= deadline:
                record.problems.append(f"the soak ran out of its {budget:.0f} s budget")
                break
            if verbose:
                print(
                    f"round {number + 1}: {sessions} sessions in {wall:.1f} s "
                    f"({record.sessions_per_s:.0f}/s, {record.cpu_ms_per_session:.2f} ms CPU "
                    f"each): {record.succeeded} answered, {record.exhausted} exhausted their "
                    f"retries ({expected_exhausted} scripted to), {len(found)} problems, "
                    f"{record.blocks} memory blocks",
                    flush=True,
                )
        await client.close()
    gc.collect()
    await asyncio.sleep(0.2)  # let closed transports finish their callbacks
    gc.collect()
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--budget", type=float, default=170.0, help="seconds for the whole run")
    args = parser.parse_args()
    start = time.monotonic()
    results = asyncio.run(soak(args.sessions, args.rounds, args.seed, budget=args.budget))
    problems = [p for r in results for p in r.problems]
    for problem in problems[:20]:
        print("PROBLEM", problem)
    print(f"soak finished in {time.monotonic() - start:.0f} s with {len(problems)} problems")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
