"""L0 demo: a flaky local stream recovers by retry, a dead one by fallback. No API key needed.

Run it with ``python examples/demo.py`` (or ``nox -s demo``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import l0

ANSWER = ["Streams", " fail", " in", " production", ";", " L0", " keeps", " them", " whole", "."]


async def flaky_stream(failures: list[str]) -> AsyncIterator[str]:
    """Yield ANSWER, but break in the way the next scripted failure says."""
    fault = failures.pop(0) if failures else "ok"
    for index, token in enumerate(ANSWER):
        if fault == "drop" and index == 4:
            raise ConnectionResetError("connection reset by peer")
        if fault == "stall" and index == 2:
            await asyncio.sleep(3600)  # the inter-token timeout cuts this short
        await asyncio.sleep(0.01)
        yield token


async def dead_stream() -> AsyncIterator[str]:
    """A primary model that is down: every call fails before the first token."""
    await asyncio.sleep(0.01)
    raise ConnectionRefusedError("connection refused")


def show(label: str) -> None:
    print(f"\n\033[1m== {label}\033[0m")


async def render(result: l0.Result) -> None:
    async for event in result:
        if event.is_token:
            print(event.text, end="", flush=True)
        elif event.is_reset:
            print(f"  \033[33m[withdrawn {len(event.data['withdrawn'])} chars]\033[0m")
        elif event.is_error:
            kind = "retrying" if event.data["will_retry"] else "falling back"
            if not (event.data["will_retry"] or event.data["will_fallback"]):
                kind = "giving up"
            print(f"\n  \033[31m! {type(event.error).__name__}: {event.error} -> {kind}\033[0m")
    print()


async def main() -> None:
    retry = l0.Retry(base_delay=0.05, max_delay=0.2, seed=7)
    timeout = l0.Timeout(initial_token=1.0, inter_token=0.3)

    show("1. the connection drops mid-answer, then the stream stalls; L0 retries both")
    failures = ["drop", "stall"]
    result = l0.run(
        lambda: flaky_stream(failures),
        retry=retry,
        timeout=timeout,
        on_retry=lambda attempt, reason: print(f"  on_retry: attempt {attempt} ({reason})"),
    )
    await render(result)
    await result.wait_callbacks()
    state = result.state
    print(f"  content: {state.content!r}")
    print(f"  attempts: {state.attempt}, retries: {state.total_retries}")

    show("2. the primary model is down; L0 falls back to the second one")
    result = l0.run(
        dead_stream,
        fallbacks=[lambda: flaky_stream([])],
        retry=l0.Retry(max_retries=2, base_delay=0.05, seed=7),
        timeout=timeout,
        on_fallback=lambda index, reason: print(f"  on_fallback: to fallback {index} ({reason})"),
    )
    await render(result)
    await result.wait_callbacks()
    print(f"  served by fallback index {result.state.fallback_index}")

    show("3. every model is down; L0 raises one typed error with each attempt's cause")
    try:
        await l0.run(dead_stream, retry=l0.Retry(max_retries=2, base_delay=0.01)).read()
    except l0.RetryExhaustedError as exc:
        print(f"  {type(exc).__name__}: {exc}")
        for attempt in exc.errors:
            print(f"    attempt {attempt.attempt}: {attempt.category.value}: {attempt.error!r}")


if __name__ == "__main__":
    asyncio.run(main())
