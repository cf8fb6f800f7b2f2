"""``l0-sentry``: the give-up event carries the real exception (stack trace, cause chain), and
race/parallel/consensus groups get a span with their sessions nested under it."""

from __future__ import annotations

from typing import Any

import openai
import sentry_sdk

import l0
from l0.testing import ChaosServer, Fault
from tests.sentry.conftest import CapturingTransport

MESSAGES: Any = [{"role": "user", "content": "Say it."}]
TEXT = "The bridge opens at nine and closes at dusk."


class StoreDown(Exception):
    """The application's own error, raised from a lower-level one."""


def failing_source() -> Any:
    async def tokens() -> Any:
        yield "partial "
        try:
            raise KeyError("shard-7")
        except KeyError as exc:
            raise StoreDown("the store went away") from exc

    return tokens()


async def test_give_up_event_carries_stack_trace_and_cause_chain(
    sentry: CapturingTransport,
) -> None:
    with sentry_sdk.start_transaction(op="task", name="job"):
        result = l0.run(
            failing_source, retry=l0.Retry(max_retries=1, base_delay=0.0, max_delay=0.0)
        )
        try:
            await result.read()
        except l0.RetryExhaustedError as exc:
            raised: BaseException = exc
    assert isinstance(raised.__cause__, StoreDown)
    sentry_sdk.flush()
    (event,) = [e for e in sentry.errors() if e.get("logger") == "l0"]
    values = event["exception"]["values"]
    # Sentry lists the chain oldest first: the KeyError, then the error L0 gave up on.
    assert [v["type"] for v in values] == ["KeyError", "StoreDown"]
    top = values[-1]
    assert top["value"] == "the store went away"
    assert top["mechanism"]["type"] == "l0"
    assert top["mechanism"]["handled"] is False
    frames = top["stacktrace"]["frames"]
    assert any(f["function"] == "tokens" for f in frames)
    assert event["contexts"]["l0"]["attempts"] == 2
    assert event["tags"]["l0.attempts"] == 2


async def test_race_sessions_nest_under_the_race_span(sentry: CapturingTransport) -> None:
    scripts = {
        "slow-model": [Fault.slow_first_token(3)],
        "quick-model": [Fault.ok(text=TEXT)],
    }
    async with ChaosServer(model_scripts=scripts) as server:
        client = l0.wrap(openai.AsyncOpenAI(base_url=server.base_url, api_key="test"))

        def ask(model: str) -> Any:
            return lambda: client.chat.completions.create(
                model=model, messages=MESSAGES, stream=True
            )

        with sentry_sdk.start_transaction(op="http.server", name="handle request"):
            result = await l0.race([ask("slow-model"), ask("quick-model")])
        await client.close()
    assert result.value == TEXT
    sentry_sdk.flush()
    (tx,) = sentry.transactions()
    spans = sentry.spans()
    (race,) = [s for s in spans if s["op"] == "l0.race"]
    assert race["parent_span_id"] == tx["contexts"]["trace"]["span_id"]
    assert race["status"] == "ok"
    assert race["data"]["l0.group.tasks"] == 2
    chats = {s["name"]: s for s in spans if s["op"] == "gen_ai.chat"}
    assert set(chats) == {"chat slow-model", "chat quick-model"}
    assert all(s["parent_span_id"] == race["span_id"] for s in chats.values())
    assert chats["chat quick-model"]["status"] == "ok"
    assert chats["chat slow-model"]["data"]["l0.status"] == "aborted"  # the loser was cancelled
    assert [e for e in sentry.errors() if e.get("logger") == "l0"] == []


async def test_parallel_and_consensus_groups_have_spans(sentry: CapturingTransport) -> None:
    async def words(text: str) -> Any:
        for word in text.split(" "):
            yield word + " "

    def source(text: str) -> Any:
        return lambda: words(text)

    with sentry_sdk.start_transaction(op="task", name="fan out"):
        await l0.parallel([source("a b"), source("c d")])
        await l0.consensus([source("yes it is"), source("yes it is"), source("yes it is")])
    sentry_sdk.flush()
    spans = sentry.spans()
    groups = {s["op"]: s for s in spans if s["op"] in ("l0.parallel", "l0.consensus")}
    assert set(groups) == {"l0.parallel", "l0.consensus"}
    for op, count in (("l0.parallel", 2), ("l0.consensus", 3)):
        children = [s for s in spans if s.get("parent_span_id") == groups[op]["span_id"]]
        assert len(children) == count, op
        assert all(s["op"] == "gen_ai.chat" for s in children)
        assert groups[op]["status"] == "ok"
