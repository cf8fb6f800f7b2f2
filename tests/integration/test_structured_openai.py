"""``l0.structured`` with the real ``openai`` SDK over HTTP against the chaos server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import openai
import pytest
from pydantic import BaseModel

import l0
from l0.testing import ChaosServer, Fault

FAST = l0.Retry(base_delay=0.0, max_delay=0.0)
MESSAGES: Any = [{"role": "user", "content": "Describe Ada Lovelace as JSON."}]
VALID = '{"name": "Ada Lovelace", "born": 1815, "fields": ["mathematics", "computing"]}'
FENCED = f"Here is the profile:\n```json\n{VALID}\n```\nLet me know if you need more."


class Person(BaseModel):
    name: str
    born: int
    fields: list[str]


EXPECTED = Person(name="Ada Lovelace", born=1815, fields=["mathematics", "computing"])


def client_for(server: ChaosServer) -> openai.AsyncOpenAI:
    # max_retries=0: L0 owns retries, so each L0 attempt is exactly one HTTP request.
    return openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)


def factory(client: Any) -> Callable[[], Any]:
    return lambda: client.chat.completions.create(model="chaos-1", messages=MESSAGES, stream=True)


async def test_broken_json_then_valid_json_is_retried() -> None:
    # Not JSON even after auto-correction (a key with no value); json-repair, when installed,
    # fills the gap with a non-integer, which then fails validation: a retry either way.
    broken = '{"name": "Ada Lovelace", "born": , "fields": ["mathematics"]}'
    retries: list[tuple[int, str]] = []
    async with ChaosServer([Fault.ok(text=broken), Fault.ok(text=VALID)]) as server:
        client = client_for(server)
        result = await l0.structured(
            Person,
            factory(client),
            retry=FAST,
            on_retry=lambda attempt, reason: retries.append((attempt, reason)),
        )
        await result.result.wait_callbacks()
        assert result.data == EXPECTED
        assert result.raw == VALID
        assert len(server.requests) == 2
        assert result.state.attempt == 2
        assert retries == [(2, "content")]
        await client.close()


async def test_truncated_answer_is_completed_without_a_retry() -> None:
    cut = VALID[: VALID.index("]") + 1]  # the closing brace never came
    async with ChaosServer([Fault.ok(text=cut, finish_reason="length")]) as server:
        client = client_for(server)
        result = await l0.structured(Person, factory(client), retry=FAST, accept_truncated=True)
        assert result.data == EXPECTED
        assert result.corrections == ["closed 1 unclosed bracket at the end"]
        assert result.state.finish_reason == "length"
        assert len(server.requests) == 1
        await client.close()


async def test_fenced_answer_through_the_wrapped_client() -> None:
    async with ChaosServer([Fault.ok(text=FENCED)]) as server:
        raw = client_for(server)
        client = l0.wrap(raw, retry=FAST)
        result = await l0.structured(Person, factory(client), retry=FAST)
        assert result.data == EXPECTED
        assert result.raw == FENCED
        assert result.corrected is False
        assert len(server.requests) == 1
        await raw.close()


async def test_every_answer_invalid_raises_with_the_last_one() -> None:
    wrong = '{"name": "Ada Lovelace", "born": "long ago", "fields": []}'
    async with ChaosServer(default=Fault.ok(text=wrong)) as server:
        client = client_for(server)
        with pytest.raises(l0.StructuredOutputError) as caught:
            await l0.structured(Person, factory(client), retry=l0.Retry(attempts=2, base_delay=0.0))
        assert len(server.requests) == 3
        assert caught.value.raw == wrong
        assert caught.value.validation_errors[0]["loc"] == ("born",)
        await client.close()


class Stock(BaseModel):
    item: str
    quantity: int


CUT = '{"item": "bolts", "quantity": 15'  # "1500" cut at max_tokens


async def test_an_answer_cut_at_the_token_limit_is_retried() -> None:
    # Issue 8 item 3: a number cut short ("15" of "1500") must not validate as 15.
    whole = '{"item": "bolts", "quantity": 1500}'
    async with ChaosServer(
        [Fault.ok(text=CUT, finish_reason="length"), Fault.ok(text=whole)]
    ) as server:
        client = client_for(server)
        result = await l0.structured(Stock, factory(client), retry=FAST)
        assert result.data == Stock(item="bolts", quantity=1500)
        assert len(server.requests) == 2
        assert [v.rule for v in result.state.violations] == ["structured_output"]
        assert "finish_reason='length'" in result.state.violations[0].message
        await client.close()


async def test_a_cut_answer_can_be_accepted_without_its_unfinished_number() -> None:
    async with ChaosServer([Fault.ok(text=CUT, finish_reason="length")]) as server:
        client = client_for(server)

        class Partial(BaseModel):
            item: str
            quantity: int | None = None

        result = await l0.structured(Partial, factory(client), retry=FAST, accept_truncated=True)
        assert result.data == Partial(item="bolts", quantity=None)
        assert len(server.requests) == 1
        assert any("unfinished" in c for c in result.corrections)
        await client.close()
