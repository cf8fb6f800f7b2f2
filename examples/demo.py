"""L0 demo: the real OpenAI SDK against a local server that misbehaves on cue. No API key.

A local OpenAI-compatible server (``l0.testing.ChaosServer``, bound to 127.0.0.1) answers
each request of ``openai.AsyncOpenAI`` with a scripted fault; L0 keeps every answer whole:

1. a rate limit with ``Retry-After``, then a connection dropped mid-answer;
2. a drop with continuation on: the next request continues from the last good token and the
   words the model repeats at the seam are removed;
3. an "As an AI language model" answer, rejected by the recommended guardrails and retried;
4. a looping answer, cut off by drift detection as soon as the loop is seen;
5. a stalled stream (inter-token timeout), then a primary model that is down: the fallback
   model answers.

Run it with ``python examples/demo.py`` (or ``nox -s demo``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import openai

import l0
from l0.testing import ChaosServer, Fault

ANSWER = (
    "Streams fail in production: connections drop, providers stall, models ramble. "
    "L0 retries what is worth retrying, continues from the last good token, and checks the "
    "answer while it streams."
)
MESSAGES: Any = [{"role": "user", "content": "Why do LLM apps need a reliability layer?"}]

BOLD, DIM, RED, YELLOW, GREEN, RESET = (
    "\033[1m",
    "\033[2m",
    "\033[31m",
    "\033[33m",
    "\033[32m",
    "\033[0m",
)


def show(title: str) -> None:
    print(f"\n{BOLD}== {title}{RESET}")


async def render(result: l0.Result) -> None:
    """Print tokens as they arrive, and what L0 does about each failure."""
    mid_line = False
    async for event in result:
        if event.is_token:
            print(event.text, end="", flush=True)
            mid_line = True
        elif event.is_reset:
            print(f" {YELLOW}[withdrawn {len(event.data['withdrawn'])} chars]{RESET}")
            mid_line = False
        elif event.is_error:
            data = event.data
            action = "retrying" if data["will_retry"] else "falling back"
            if not (data["will_retry"] or data["will_fallback"]):
                action = "giving up"
            newline = "\n" if mid_line else ""
            print(
                f"{newline}  {RED}! {type(event.error).__name__}: {event.error} -> {action}{RESET}"
            )
            mid_line = False
    state = result.state
    if state.resumed:
        print(
            f"\n  {DIM}continued after {state.resume_from} chars; nothing shown twice{RESET}",
            end="",
        )
    print(
        f"\n  {GREEN}ok{RESET} {DIM}{state.token_count} tokens, "
        f"{state.network_retry_count} network + {state.model_retry_count} model retries, "
        f"fallback {state.fallback_index}, {state.duration:.2f}s{RESET}"
    )


async def scene(
    title: str,
    script: Sequence[Fault],
    *,
    model_scripts: dict[str, Sequence[Fault]] | None = None,
    **options: Any,
) -> None:
    show(title)
    async with ChaosServer(script=script, text=ANSWER, model_scripts=model_scripts) as server:
        sdk = openai.AsyncOpenAI(base_url=server.base_url, api_key="no-key-needed")
        options.setdefault("retry", l0.Retry(base_delay=0.05, max_delay=0.2, seed=7))
        options.setdefault("timeout", l0.Timeout(initial_token=1.0, inter_token=0.3))
        client = l0.wrap(sdk, **options)
        result = client.chat.completions.create(model="demo-large", messages=MESSAGES, stream=True)
        await render(result)
        print(f"  {DIM}the server saw {len(server.requests)} requests{RESET}")
        await sdk.close()


LOOP = "I keep saying the same thing. " * 40
AS_AN_AI = "As an AI language model, I cannot have opinions about reliability layers."


async def main() -> None:
    await scene(
        "1. rate limited, then the connection drops mid-answer",
        [Fault.status(429, headers={"Retry-After": "0.1"}), Fault.drop_after(6), Fault.ok()],
    )
    await scene(
        "2. the connection drops; the next request continues where the answer broke off",
        # The continuing model repeats " L0 retries" at the seam; L0 removes the repeat.
        [Fault.drop_after(12), Fault.ok(text=" L0 retries what is worth retrying, and resumes.")],
        continue_from_last_good_token=True,
        check_intervals={"checkpoint": 4},
    )
    await scene(
        "3. a meta answer about being an AI is rejected by the guardrails",
        [Fault.ok(text=AS_AN_AI), Fault.ok()],
        guardrails=l0.Guardrails.recommended(),
    )
    await scene(
        "4. a looping answer is cut off by drift detection",
        [Fault.ok(text=LOOP), Fault.ok()],
        drift=True,
    )
    await scene(
        "5. the primary model stalls, then is down; the fallback model answers",
        [],
        model_scripts={"demo-large": [Fault.stall_after(3, seconds=5)] + [Fault.status(503)] * 9},
        fallback_models=["demo-small"],
        retry=l0.Retry(max_retries=2, base_delay=0.05, max_delay=0.2, seed=7),
    )


if __name__ == "__main__":
    asyncio.run(main())
