"""continue_on_length with JSON seams, structured output, and bad input to the recovery options."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pydantic
import pytest

import l0
import l0.errors
from l0._json_seam import JSONPrefix, json_overlap

DOC = '{"name": "Alice", "tags": ["a", "b"], "ok": true}'


def parts_then(parts: list[str]) -> Any:
    """Attempt i yields parts[i]; every part but the last ends at the token limit."""

    async def stream(ctx: l0.AttemptContext) -> AsyncIterator[Any]:
        index = ctx.attempt - 1
        yield parts[index]
        reason = "length" if index + 1 < len(parts) else "stop"
        yield l0.Event(l0.EventType.COMPLETE, data={"finish_reason": reason})

    return stream


@pytest.mark.parametrize(
    "parts",
    [
        ['{"name": "Al', 'Alice", "tags": ["a", "b"], "ok": true}'],  # repeats half a word
        ['{"name": "Alice", "', '"tags": ["a", "b"], "ok": true}'],  # repeats a lone quote
        ['{"name": "Alice", "tags": ["a",', ' "tags": ["a", "b"], "ok": true}'],  # repeats a key
        ['{"name": "Alice"', ', "tags": ["a"', ', "b"], "ok": true}'],  # exact continuation
    ],
)
async def test_json_seams_stitch_into_a_valid_document(parts: list[str]) -> None:
    result = l0.run(parts_then(parts), continue_on_length=3)
    answer = await result.read()
    assert json.loads(answer) == json.loads(DOC)
    assert result.state.length_continuations == len(parts) - 1


def test_the_json_prefix_validator_accepts_every_prefix_and_rejects_broken_ones() -> None:
    text = json.dumps({"a": [1, -2.5e3, {"b": 'say "hi"\n'}], "c": None, "d": False})
    for i in range(len(text) + 1):
        assert JSONPrefix().feed(text[:i]), text[:i]
    for broken in ('{"a" "b"', "[1,]", '{"a": tru }', "[1]]", '{"a": 1}}'):
        assert not JSONPrefix().feed(broken), broken
    assert json_overlap('{"a": "x", "', '"b": 1}') == 1
    assert json_overlap('{"a": 1', ', "b": 2}') == 0
    assert json_overlap("not json {", "x") is None


async def test_continue_on_length_off_keeps_the_cut_answer() -> None:
    result = l0.run(parts_then(['{"name": "Al', 'ice"}']))
    assert await result.read() == '{"name": "Al'
    assert result.state.finish_reason == "length"
    assert result.state.length_continuations == 0


class Person(pydantic.BaseModel):
    name: str
    tags: list[str]
    ok: bool


async def test_structured_output_completes_a_cut_json_answer() -> None:
    parts = ['{"name": "Alice", "ta', 'tags": ["a", "b"],', ' "ok": true}']
    got = await l0.structured(Person, parts_then(parts), continue_on_length=2)
    assert got.data == Person(name="Alice", tags=["a", "b"], ok=True)
    assert not got.corrections
    assert got.state.length_continuations == 2


# --- bad input ------------------------------------------------------------------------------


def factory() -> AsyncIterator[str]:
    async def gen() -> AsyncIterator[str]:
        yield "x"

    return gen()


@pytest.mark.parametrize(
    ("kwargs", "error", "names"),
    [
        ({"continue_on_length": -1}, ValueError, "continue_on_length=-1"),
        ({"continue_on_length": "2"}, TypeError, "continue_on_length='2'"),
        ({"continue_on_length": 1.5}, TypeError, "continue_on_length=1.5"),
        ({"continue_on_length": True}, TypeError, "continue_on_length=True"),
        ({"hedge_after": 0}, ValueError, "hedge_after=0"),
        ({"hedge_after": -1.0}, ValueError, "hedge_after=-1.0"),
        ({"hedge_after": "1"}, TypeError, "hedge_after='1'"),
        (
            {"hedge_after": 2.0, "timeout": l0.Timeout(total=1.0)},
            ValueError,
            "hedge_after=2.0: expected less than Timeout.total=1.0",
        ),
    ],
)
def test_bad_recovery_options_fail_before_anything_starts(
    kwargs: dict[str, Any], error: type[Exception], names: str
) -> None:
    with pytest.raises(error, match=names.replace("(", r"\(").replace(".", r"\.")):
        l0.run(factory, **kwargs)


@pytest.mark.parametrize("total", [0, -1.0, float("nan")])
def test_a_total_timeout_must_be_positive(total: float) -> None:
    with pytest.raises(ValueError, match=r"Timeout\(total="):
        l0.Timeout(total=total)


def test_fallback_on_names_known_failure_kinds() -> None:
    with pytest.raises(ValueError, match=r"fallback_on=.*unknown failure kind\(s\) 'timeout'"):
        l0.Retry(fallback_on=["timeout"])
    with pytest.raises(TypeError, match=r"Retry\(fallback_on='network'\)"):
        l0.Retry(fallback_on="network")
    assert l0.Retry(fallback_on=["network"]).fallback_on == frozenset({"network"})
    assert l0.Retry().fallback_on == {"initial_token_timeout", "inter_token_timeout"}


def test_an_unknown_continuation_strategy_is_named() -> None:
    client = openai.AsyncOpenAI(base_url="http://127.0.0.1:9/v1", api_key="test")
    with pytest.raises(ValueError, match=r"continuation_strategies=\['prefil'\]: unknown strategy"):
        l0.wrap(client, continuation_strategies=["prefil"])
    with pytest.raises(TypeError, match=r"continuation_strategies='user'"):
        l0.wrap(client, continuation_strategies="user")


# --- routing, deadline and hedging with plain factories -------------------------------------


class Status(Exception):
    def __init__(self, status: int, retry_after: str | None = None) -> None:
        super().__init__(f"status {status}")
        self.status_code = status
        self.headers = {"retry-after": retry_after} if retry_after else {}


async def silent() -> AsyncIterator[str]:
    await asyncio.sleep(3600)
    yield "never"


async def words(*items: str) -> AsyncIterator[str]:
    for item in items:
        yield item


async def test_a_retry_after_longer_than_the_time_left_moves_to_the_fallback_at_once() -> None:
    events: list[l0.ObservabilityEvent] = []

    def busy() -> AsyncIterator[str]:
        raise Status(503, retry_after="5")

    started = asyncio.get_running_loop().time()
    result = l0.run(
        busy,
        fallbacks=[lambda: words("from", " the", " fallback")],
        timeout=l0.Timeout(total=2.0),
        on_event=events.append,
    )
    assert await result.read() == "from the fallback"
    assert asyncio.get_running_loop().time() - started < 1.0
    await result.wait_callbacks()
    routed = [dict(e.data) for e in events if e.type == "FAILURE_ROUTED"]
    assert [(r["failure"], r["decision"]) for r in routed] == [("server_error", "fallback")]
    assert "would pass Timeout.total=2.0s" in routed[0]["reason"]


async def test_without_a_fallback_the_deadline_error_is_raised_before_sleeping() -> None:
    def busy() -> AsyncIterator[str]:
        raise Status(503, retry_after="5")

    started = asyncio.get_running_loop().time()
    result = l0.run(busy, timeout=l0.Timeout(total=2.0))
    with pytest.raises(l0.errors.DeadlineExceededError) as caught:
        await result.read()
    assert asyncio.get_running_loop().time() - started < 1.0
    assert isinstance(caught.value.__cause__, Status)
    assert len(caught.value.errors) == 1


async def test_timeouts_retry_the_same_stream_when_fallback_on_is_empty() -> None:
    calls: list[str] = []

    def primary() -> AsyncIterator[str]:
        calls.append("primary")
        return silent() if len(calls) == 1 else words("second", " try")

    result = l0.run(
        primary,
        fallbacks=[lambda: words("fallback")],
        retry=l0.Retry(base_delay=0.0, max_delay=0.0, fallback_on=()),
        timeout=l0.Timeout(initial_token=0.2),
    )
    assert await result.read() == "second try"
    assert calls == ["primary", "primary"]


async def test_a_hedge_loses_to_a_primary_that_delivers_first() -> None:
    closed: list[str] = []

    async def slow_primary() -> AsyncIterator[str]:
        await asyncio.sleep(0.2)
        yield "primary"
        yield " wins"

    async def slower_hedge() -> AsyncIterator[str]:
        try:
            await asyncio.sleep(3600)
            yield "hedge"
        finally:
            closed.append("hedge")

    result = l0.run(slow_primary, fallbacks=[slower_hedge], hedge_after=0.05)
    assert await result.read() == "primary wins"
    assert closed == ["hedge"]
    assert result.state.fallback_index == 0
    assert [(a.attempt, a.outcome) for a in result.state.attempts] == [
        (2, "hedge_lost"),
        (1, "success"),
    ]


async def test_a_primary_failing_before_the_hedge_is_a_plain_failure() -> None:
    calls: list[str] = []

    def primary() -> AsyncIterator[str]:
        calls.append("primary")
        if len(calls) == 1:
            raise ConnectionResetError("reset")
        return words("ok")

    result = l0.run(primary, hedge_after=5.0, retry=l0.Retry(base_delay=0.0, max_delay=0.0))
    assert await result.read() == "ok"
    assert calls == ["primary", "primary"]
    assert all(a.outcome != "hedge_lost" for a in result.state.attempts)


def test_config_sets_fallback_on_and_total(
    isolated_config: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from l0.config import load_config, resolve_retry, resolve_timeout

    monkeypatch.setenv("L0_RETRY_FALLBACK_ON", "rate_limit, initial_token_timeout")
    monkeypatch.setenv("L0_TIMEOUT_TOTAL", "12.5")
    settings = load_config()
    policy = resolve_retry(None, settings, l0.build_plugin_manager(entry_points=False))
    assert policy.fallback_on == {"rate_limit", "initial_token_timeout"}
    assert resolve_timeout(None, settings).total == 12.5
