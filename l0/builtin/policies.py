"""Builtin named retry policies that config selects with ``retry.policy``."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from l0.plugins import hookimpl
from l0.retry import Retry
from l0.types import BackoffStrategy, RetryPolicySpec

DEFAULT_POLICY = "fixed-jitter"


def _strategy_policy(strategy: BackoffStrategy) -> RetryPolicySpec:
    def factory(settings: Mapping[str, Any]) -> Retry:
        return Retry(**{"strategy": strategy, **settings})

    return RetryPolicySpec(
        name=strategy.value,
        factory=factory,
        summary=f"{strategy.value} backoff with the Retry defaults",
    )


def _no_retry(settings: Mapping[str, Any]) -> Retry:
    return Retry(**{"attempts": 0, "max_retries": 0, **settings})


@hookimpl
def l0_register_retry_policies() -> Iterator[RetryPolicySpec]:
    """One policy per backoff strategy, plus ``none`` (never retry)."""
    for strategy in BackoffStrategy:
        yield _strategy_policy(strategy)
    yield RetryPolicySpec(name="none", factory=_no_retry, summary="never retry")
