"""Cheap sessions: what a plain ``l0.run`` no longer builds, and that behaviour is unchanged."""

from __future__ import annotations

import functools
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

import l0
from l0._options import _takes_context
from l0.retry import BackoffStrategy, compute_backoff
from l0.types import AttemptContext


async def three() -> AsyncIterator[str]:
    yield "a"
    yield "b"
    yield "c"


async def test_a_session_without_retries_never_creates_a_random_generator() -> None:
    result = l0.run(three, retry=l0.Retry(strategy=BackoffStrategy.FULL_JITTER))
    assert await result.read() == "abc"
    assert result._session._opts._rng is None


async def test_jitter_with_the_same_seed_is_the_same_sequence() -> None:
    policy = l0.Retry(base_delay=0.5, max_delay=100.0, strategy=BackoffStrategy.FULL_JITTER)

    def delays(seed: int) -> list[float | None]:
        session = l0.run(three, retry=policy, seed=seed)._session
        return [compute_backoff(i, policy, session._opts.rng) for i in range(6)]

    first, again = delays(42), delays(42)
    assert first == again
    expected = random.Random(42)
    assert first == [compute_backoff(i, policy, expected) for i in range(6)]
    assert delays(43) != first


class Callable0:
    def __call__(self) -> Any:
        return three()


class Callable1:
    def __call__(self, ctx: AttemptContext) -> Any:
        return three()

    def method0(self) -> Any:
        return three()

    def method1(self, ctx: AttemptContext) -> Any:
        return three()


def plain(ctx: AttemptContext | None, extra: int = 0) -> Any:
    return three()


def optional(ctx: AttemptContext | None = None) -> Any:
    return three()


def star(*args: Any) -> Any:
    return three()


@functools.wraps(plain)
def wrapped_plain(*args: Any, **kwargs: Any) -> Any:
    return plain(*args, **kwargs)


def keyword_only(*, ctx: AttemptContext | None = None) -> Any:
    return three()


@pytest.mark.parametrize(
    ("factory", "takes"),
    [
        (three, False),
        (lambda ctx: three(), True),
        (plain, True),
        (optional, False),
        (star, False),
        (wrapped_plain, True),  # inspect.signature follows __wrapped__
        (keyword_only, False),
        (Callable0(), False),
        (Callable1(), True),
        (Callable1().method0, False),
        (Callable1().method1, True),
        (functools.partial(plain), True),
        (functools.partial(plain, None), False),
        (print, False),
    ],
)
def test_takes_context_matches_the_signature(factory: Any, takes: bool) -> None:
    assert _takes_context(factory) is takes
    assert _takes_context(factory) is takes  # cached answers are the same


async def test_factories_get_the_context_exactly_when_they_ask_for_it() -> None:
    seen: list[Any] = []

    def wants(ctx: AttemptContext) -> Any:
        seen.append(ctx.attempt)
        return three()

    assert await l0.run(wants).read() == "abc"
    assert await l0.run(Callable1().method1).read() == "abc"
    assert await l0.run(functools.partial(plain, None)).read() == "abc"
    assert seen == [1]
