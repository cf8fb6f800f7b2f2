"""Continuation and abort through the real openai SDK over HTTP against the chaos server."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
from openai.types.chat import ChatCompletionMessageParam

import l0
from l0.testing import ChaosServer, Fault

TOKENS = ["The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog."]
FULL = "".join(TOKENS)


def client_for(server: ChaosServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)


async def test_dropped_connection_continues_without_gap_or_doubled_words() -> None:
    continuation = [" brown", " fox", " jumps", " over", " the", " lazy", " dog."]
    async with ChaosServer(
        script=[Fault.drop_after(3), Fault.ok(tokens=continuation)], tokens=TOKENS
    ) as server:
        client = client_for(server)

        def request(ctx: l0.AttemptContext) -> Any:
            messages: list[ChatCompletionMessageParam] = [
                {"role": "user", "content": "Write the sentence."}
            ]
            if ctx.continuation_prompt:
                messages.append({"role": "user", "content": ctx.continuation_prompt})
            return client.chat.completions.create(
                model="chaos-1",
                messages=messages,
                stream=True,
            )

        result = l0.run(
            request,
            retry=l0.Retry(base_delay=0.0, max_delay=0.0),
            continue_from_last_good_token=True,
            build_continuation_prompt=lambda checkpoint: f"Continue from: {checkpoint}",
        )
        shown = ""
        async for event in result:
            assert not event.is_reset
            if event.is_token:
                shown += event.text or ""
        assert shown == FULL
        assert result.state.content == FULL
        assert result.state.resume_point == "The quick brown"
        assert len(server.requests) == 2
        second = server.requests[1].messages
        assert second[-1]["content"] == "Continue from: The quick brown"
        await client.close()


async def test_abort_closes_the_http_connection() -> None:
    async with ChaosServer(script=[Fault.stall_after(2, seconds=30)], tokens=TOKENS) as server:
        client = client_for(server)
        result = l0.run(
            lambda: client.chat.completions.create(
                model="chaos-1", messages=[{"role": "user", "content": "hi"}], stream=True
            )
        )
        task = asyncio.create_task(result.read())
        await asyncio.sleep(0.3)
        result.abort()
        try:
            await task
        except l0.AbortedError:
            pass
        else:
            raise AssertionError("abort did not stop the read")
        await result.wait_callbacks()
        current = asyncio.current_task()
        assert [t for t in asyncio.all_tasks() if t is not current and not t.done()] == []
        pool = client._client._transport._pool  # type: ignore[attr-defined]
        assert all(not c.is_available() or c.is_idle() for c in pool.connections)
        assert result.state.aborted
        assert result.state.content == "The quick"
        await client.close()
