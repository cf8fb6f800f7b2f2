"""Record/replay of failed sessions and unwritable record paths (issue 8 items 5 and 6)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest

import l0
from l0.record import RecordedError, replay
from l0.testing import ChaosServer, Fault

FAST = l0.Retry(attempts=1, base_delay=0.0, max_delay=0.0)
MESSAGES: Any = [{"role": "user", "content": "hi"}]


async def test_a_failed_provider_session_replays_as_its_error(tmp_path: Path) -> None:
    path = tmp_path / "auth.jsonl"
    async with ChaosServer([Fault.status(401)]) as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="bad", max_retries=0)
        result = l0.run(
            lambda: client.chat.completions.create(model="chaos-1", messages=MESSAGES, stream=True),
            record=path,
            retry=FAST,
        )
        with pytest.raises(openai.AuthenticationError) as live:
            await result.read()
        await result.wait_callbacks()
        await client.close()
    played = replay(path)
    with pytest.raises(RecordedError) as again:
        await played.read()
    assert again.value.type_name == "AuthenticationError"
    assert str(again.value) == str(live.value)
    assert again.value.category == "fatal"


async def test_an_exhausted_session_replays_as_retry_exhausted(tmp_path: Path) -> None:
    path = tmp_path / "exhausted.jsonl"

    async def broken() -> AsyncIterator[str]:
        yield "partial "
        raise RuntimeError("model went away")

    result = l0.run(broken, record=path, retry=FAST)

    async def consume(source: Any) -> str:
        seen = ""
        async for event in source:
            if event.is_token:
                seen += event.text or ""
        return seen

    with pytest.raises(l0.RetryExhaustedError) as live:
        await consume(result)
    await result.wait_callbacks()
    with pytest.raises(RecordedError, match="gave up after") as again:
        await replay(path).read()
    assert again.value.type_name == "RetryExhaustedError"
    assert again.value.category == live.value.category.value
    # The events before the failure still replay, then the error comes.
    played = replay(path)
    assert played.error is not None
    with pytest.raises(RecordedError):
        await consume(played)


async def test_a_good_session_still_replays_normally(tmp_path: Path) -> None:
    path = tmp_path / "ok.jsonl"

    async def fine() -> AsyncIterator[str]:
        yield "all "
        yield "good"

    result = l0.run(fine, record=path)
    assert await result.read() == "all good"
    await result.wait_callbacks()
    assert await replay(path).read() == "all good"


async def fine_stream() -> AsyncIterator[str]:
    yield "text"


def test_a_directory_as_record_path_fails_at_run(tmp_path: Path) -> None:
    with pytest.raises(l0.ConfigError, match=r"record=.*cannot be opened for appending"):
        l0.run(fine_stream, record=tmp_path)


def test_a_missing_directory_is_not_created(tmp_path: Path) -> None:
    target = tmp_path / "no" / "such" / "dir" / "rec.jsonl"
    with pytest.raises(l0.ConfigError, match="does not exist; L0 does not create it"):
        l0.run(fine_stream, record=target)
    assert not (tmp_path / "no").exists()


async def test_write_errors_are_logged_once_and_never_stall(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # /dev/full opens fine and fails every write: the disk-full case.
    caplog.set_level(logging.ERROR, logger="l0")
    results = []
    for _ in range(2):
        result = l0.run(fine_stream, record="/dev/full")
        assert await result.read() == "text"
        # Generous: the old writer stalled 5 s per call; a healthy one returns at once.
        async with asyncio.timeout(4):
            await result.wait_callbacks()
            await result.wait_callbacks()
        results.append(result)
    for result in results:
        assert result.state.record_error is not None
        assert "/dev/full" in result.state.record_error
    logged = [r for r in caplog.records if "record" in r.getMessage()]
    assert len(logged) == 1


async def test_a_consumer_that_stops_early_records_no_error(tmp_path: Path) -> None:
    path = tmp_path / "early.jsonl"

    async def many() -> AsyncIterator[str]:
        for word in ["one ", "two ", "three ", "four "]:
            yield word

    result = l0.run(many, record=path)
    async for event in result:
        if event.is_token:
            break
    await result.aclose()
    await result.wait_callbacks()
    assert replay(path).error is None
