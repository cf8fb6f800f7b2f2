"""The native transport closes httpx's byte iterators itself, from the task that reads them.

Regression tests for issue 11: closing a native stream while another task waited in a read
called ``aclose()`` on httpx's running body generator ("aclose(): asynchronous generator is
already running"), and streams that ended left httpx's nested generators suspended for the
garbage collector to finalize, possibly after their event loop had closed.
"""

from __future__ import annotations

import asyncio
import json
import sys
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import openai
import pytest
from l0_openai import OpenAIAdapter
from l0_openai.native import NativeStream

import l0
from l0.testing import ChaosServer, Fault

MESSAGES: Any = [{"role": "user", "content": "Say it."}]
ONCE = l0.Retry(max_retries=0, attempts=1)
NATIVE = OpenAIAdapter(transport="native")


def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    payload = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return json.dumps(payload).encode()


@contextmanager
def tracked_generators() -> Iterator[list[weakref.ref[Any]]]:
    """Record every async generator first iterated inside the block (weakly)."""
    seen: list[weakref.ref[Any]] = []
    hooks = sys.get_asyncgen_hooks()
    first = hooks.firstiter

    def firstiter(agen: Any) -> None:
        seen.append(weakref.ref(agen))
        if first is not None:
            first(agen)

    sys.set_asyncgen_hooks(firstiter=firstiter, finalizer=hooks.finalizer)
    try:
        yield seen
    finally:
        sys.set_asyncgen_hooks(firstiter=first, finalizer=hooks.finalizer)


def suspended(seen: list[weakref.ref[Any]], package: str) -> list[str]:
    """Names of the tracked generators from ``package`` that are still suspended."""
    names = []
    for ref in seen:
        agen = ref()
        if agen is None or agen.ag_frame is None:
            continue
        if f"{package}/" in agen.ag_code.co_filename.replace("\\", "/"):
            names.append(agen.ag_code.co_qualname)
    return sorted(names)


SCENARIOS: dict[str, tuple[list[Fault], dict[str, Any]]] = {
    "answer": ([Fault.ok()], {}),
    "malformed event": ([Fault.malformed_sse(1)], {}),
    "error event": ([Fault.stream_error(2)], {}),
    "cut connection": ([Fault.drop_after(2)], {}),
    "truncated last event": (
        [Fault.raw_sse([b"data: " + chunk({"content": "x"}) + b'\n\ndata: {"cho'])],
        {},
    ),
    "answer, then a slow trailer": (
        [
            Fault.raw_sse(
                [
                    b"data: " + chunk({"content": "x"}, "stop") + b"\n\ndata: [DONE]\n\n",
                    b": still here\n\n",
                ],
                gap=1.0,
            )
        ],
        {},
    ),
    "inter-token timeout": (
        [Fault.stall_after(2, 3.0)],
        {"timeout": l0.Timeout(initial_token=10, inter_token=0.3)},
    ),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_every_ending_leaves_no_httpx_generator_suspended(name: str) -> None:
    script, options = SCENARIOS[name]
    async with ChaosServer(text="a b c d") as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="t", max_retries=0)
        server.set_script(script)
        with tracked_generators() as seen:
            result = l0.run(
                lambda: client.chat.completions.create(model="m", messages=MESSAGES, stream=True),
                adapter=NATIVE,
                retry=ONCE,
                **options,
            )
            try:
                await result.read()
            except l0.errors.RetryExhaustedError:
                assert not name.startswith("answer")
            else:
                assert name.startswith("answer")
        # httpx2's own generators (the body iterator and the streams under it) are all
        # closed or finished; an answer whose body ends after [DONE] leaves none of
        # httpcore's either (one still sending is cut after a short drain).
        assert seen  # the hook saw the generators (freed ones are closed, so fine)
        assert suspended(seen, "httpx2") == []
        if name == "answer":
            assert suspended(seen, "httpcore") == []
        await client.close()


async def test_aclose_from_another_task_during_a_read_ends_the_read() -> None:
    # The runtime's abort and timer paths close a stream from outside the reading task.
    async with ChaosServer(text="a b c d") as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="t", max_retries=0)
        server.set_script([Fault.stall_after(1, 3.0)])
        stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        native = NATIVE.wrap(stream)
        assert isinstance(native, NativeStream)

        first = asyncio.Event()

        async def consume(items: AsyncIterator[Any]) -> list[Any]:
            got = []
            async for item in items:
                got.append(item)
                first.set()
            return got

        reading = asyncio.get_running_loop().create_task(consume(native))
        await first.wait()
        await asyncio.sleep(0.2)  # the reader now waits for the stalled body
        await native.aclose()  # raised RuntimeError (generator already running) before
        async with asyncio.timeout(10):
            with pytest.raises(openai.APIConnectionError):
                await reading
        assert native._reads.ag_frame is None  # the reading task closed it
        assert stream.response.is_closed
        await native.aclose()  # idempotent
        await client.close()


async def test_abort_while_reading_closes_the_stream_cleanly() -> None:
    async with ChaosServer(text="a b c d") as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="t", max_retries=0)
        server.set_script([Fault.stall_after(2, 3.0)])
        with tracked_generators() as seen:
            result = l0.run(
                lambda: client.chat.completions.create(model="m", messages=MESSAGES, stream=True),
                adapter=NATIVE,
                retry=ONCE,
            )
            tokens = 0

            async def until_aborted() -> None:
                nonlocal tokens
                async for event in result:
                    if event.is_token:
                        tokens += 1
                        if tokens == 2:
                            asyncio.get_running_loop().call_later(0.2, result.abort)

            with pytest.raises(l0.errors.AbortedError):
                await until_aborted()
        assert tokens == 2
        assert suspended(seen, "httpx2") == []
        await client.close()
