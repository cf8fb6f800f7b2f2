"""l0.continuation_strategies: the provider-neutral part of a wrapped client's continuation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import l0
from l0.continuation_strategies import (
    DEFAULT_USER_TURN,
    check_strategies,
    continuation_request,
    forget_strategies,
    rejects_prefill,
    remembered_strategy,
    resolve_strategies,
    send_continuation,
    with_user_turn,
)
from l0.testing._plans import PREFILL_REJECTION


@pytest.fixture(autouse=True)
def fresh_memory() -> Iterator[None]:
    forget_strategies()
    yield
    forget_strategies()


class HTTPError(Exception):
    """An SDK's HTTP error: the status in ``status_code``, the provider's message in str()."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"Error code: {status} - {message}")
        self.status_code = status


def status_error(status: int, message: str) -> HTTPError:
    return HTTPError(status, message)


def test_a_400_about_the_prefill_or_last_role_is_a_rejection() -> None:
    assert rejects_prefill(status_error(400, PREFILL_REJECTION))
    assert rejects_prefill(status_error(400, "The final message must be a user message"))
    assert not rejects_prefill(status_error(400, "max_tokens is too large: 99999"))
    assert not rejects_prefill(status_error(500, "assistant prefill failed"))
    assert not rejects_prefill(ValueError("assistant prefill"))  # no HTTP status at all


PARAMS: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "JSON?"}]}


def test_each_strategy_builds_its_request_without_touching_the_original() -> None:
    kept = '{"name": "a {kept} brace'
    prefill = continuation_request(PARAMS, "prefill", kept)
    assert prefill["messages"] == [*PARAMS["messages"], {"role": "assistant", "content": kept}]
    user = continuation_request(PARAMS, "user", kept)
    assert user["messages"][-1] == {
        "role": "user",
        "content": DEFAULT_USER_TURN.replace("{kept}", kept),
    }
    assert kept in user["messages"][-1]["content"]  # braces in the text survive
    assert continuation_request(PARAMS, "restart", kept) == PARAMS
    assert PARAMS["messages"] == [{"role": "user", "content": "JSON?"}]
    # The Responses API's ``input`` may be a bare string: it becomes the first user message.
    responses = continuation_request({"input": "Hi"}, "prefill", "Hel", key="input")
    assert responses["input"] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hel"},
    ]
    assert with_user_turn(PARAMS, "go on")["messages"][-1] == {"role": "user", "content": "go on"}


class Provider:
    """A provider that refuses the strategies in ``refuses`` with ``error``."""

    def __init__(self, refuses: set[str], error: BaseException | None = None) -> None:
        self.refuses = refuses
        self.error = error or status_error(400, PREFILL_REJECTION)
        self.sent: list[str] = []

    async def send(self, strategy: str) -> str:
        self.sent.append(strategy)
        if strategy in self.refuses:
            raise self.error
        return f"stream:{strategy}"


def context(reports: list[tuple[str, tuple[str, ...]]]) -> l0.AttemptContext:
    return l0.AttemptContext(
        attempt=2,
        fallback_index=1,
        is_retry=False,
        is_fallback=True,
        checkpoint="kept",
        report_continuation=lambda strategy, rejected: reports.append((strategy, rejected)),
    )


async def test_a_rejected_strategy_moves_to_the_next_and_the_winner_is_remembered() -> None:
    reports: list[tuple[str, tuple[str, ...]]] = []
    provider = Provider({"prefill"})
    order = ("prefill", "user", "restart")
    stream = await send_continuation(provider.send, context(reports), "srv", "m", order)
    assert stream == "stream:user"
    assert provider.sent == ["prefill", "user"]
    assert reports == [("user", ("prefill",))]
    assert remembered_strategy("srv", "m") == "user"
    assert remembered_strategy("srv", "other") is None
    assert remembered_strategy("other-srv", "m") is None

    # The next continuation for the same provider and model skips the prefill.
    again = Provider({"prefill"})
    assert await send_continuation(again.send, context(reports), "srv", "m", order) == "stream:user"
    assert again.sent == ["user"]
    assert reports[-1] == ("user", ())
    # A remembered strategy outside the configured ones is ignored.
    other = Provider(set())
    assert await send_continuation(other.send, context(reports), "srv", "m", ("prefill",)) == (
        "stream:prefill"
    )


async def test_other_errors_and_the_last_strategys_rejection_are_raised() -> None:
    reports: list[tuple[str, tuple[str, ...]]] = []
    down = Provider({"prefill"}, status_error(500, "assistant service down"))
    with pytest.raises(HTTPError, match="500"):
        await send_continuation(down.send, context(reports), "srv", "m", ("prefill", "user"))
    assert down.sent == ["prefill"]  # a 500 is not a rejection: no second strategy
    stubborn = Provider({"prefill", "user"})
    with pytest.raises(HTTPError, match="400"):
        await send_continuation(stubborn.send, context(reports), "srv", "m", ("prefill", "user"))
    assert stubborn.sent == ["prefill", "user"]
    assert reports == []
    assert remembered_strategy("srv", "m") is None
    with pytest.raises(ValueError, match="strategies is empty"):
        await send_continuation(stubborn.send, context(reports), "srv", "m", ())


def test_strategy_lists_are_checked_and_named() -> None:
    assert check_strategies(["user", "restart"], "here") == ("user", "restart")
    with pytest.raises(ValueError, match=r"here: continuation_strategies=\['usr'\]: unknown"):
        check_strategies(["usr"], "here")
    with pytest.raises(ValueError, match=r"continuation_strategies=\[\]: empty; choose from"):
        check_strategies([], "here")
    with pytest.raises(TypeError, match=r"continuation_strategies='user': expected a list"):
        check_strategies("user", "here")


@pytest.mark.parametrize(
    ("explicit", "error", "message"),
    [
        (["prefil"], ValueError, "unknown strategy 'prefil'"),
        ("user", TypeError, "expected a list of strategy names"),
        ([], ValueError, "empty"),
    ],
)
def test_resolve_strategies_names_a_bad_explicit_list(
    explicit: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message) as caught:
        resolve_strategies(explicit, ("user",))
    assert "continuation_strategies=" in str(caught.value)
