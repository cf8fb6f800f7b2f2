"""Retry policy: how many retries, and how long to wait before each."""

from __future__ import annotations

import math
import random
from collections.abc import Collection
from dataclasses import dataclass, fields, replace
from typing import Any

from l0.types import BackoffStrategy

__all__ = [
    "DEFAULT_FALLBACK_ON",
    "DEFAULT_MAX_RETRY_AFTER",
    "FAILURE_KINDS",
    "BackoffStrategy",
    "Retry",
    "compute_backoff",
    "normalize_strategy",
]

FAILURE_KINDS = frozenset(
    {
        "initial_token_timeout",
        "inter_token_timeout",
        "content_policy",
        "rate_limit",
        "server_error",
        "network",
        "zero_output",
    }
)
"""Failure kinds ``Retry.fallback_on`` may name."""

DEFAULT_FALLBACK_ON = frozenset({"initial_token_timeout", "inter_token_timeout"})
"""A silent or stalled model rarely recovers on the next try: go to the fallback at once."""

DEFAULT_MAX_RETRY_AFTER = 30.0
"""Longest ``Retry-After`` (seconds) L0 waits out by default; a longer one ends that stream's
retries at once (L0 moves to the next fallback or raises) instead of hanging the caller."""


def normalize_strategy(name: str) -> str:
    """A builtin strategy's value for ``name`` in any spelling, else ``name`` unchanged.

    ``"FIXED_JITTER"``, ``"Fixed-Jitter"`` and ``"fixed_jitter"`` all give ``"fixed-jitter"``;
    a name no builtin formula knows is kept as written, for a backoff plugin.
    """
    folded = name.strip().lower().replace("_", "-")
    return folded if folded in BackoffStrategy._value2member_map_ else name.strip()


def _check_number(name: str, value: object, *, minimum: float, integer: bool) -> None:
    kind = "an int" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"Retry({name}={value!r}): expected {kind} >= {minimum}")
    if integer and not isinstance(value, int):
        raise TypeError(f"Retry({name}={value!r}): expected {kind} >= {minimum}")
    if math.isnan(value) or value < minimum:
        raise ValueError(f"Retry({name}={value!r}): expected {kind} >= {minimum}")


def _check_kinds(policy: Retry) -> None:
    value: object = policy.fallback_on
    allowed = ", ".join(sorted(FAILURE_KINDS))
    if isinstance(value, str) or not isinstance(value, list | tuple | set | frozenset):
        raise TypeError(
            f"Retry(fallback_on={value!r}): expected a list of failure kinds ({allowed})"
        )
    unknown = sorted(str(kind) for kind in value if kind not in FAILURE_KINDS)
    if unknown:
        raise ValueError(
            f"Retry(fallback_on={sorted(map(str, value))!r}): unknown failure kind(s) "
            f"{', '.join(map(repr, unknown))}; choose from {allowed}"
        )
    object.__setattr__(policy, "fallback_on", frozenset(value))


@dataclass(frozen=True, slots=True)
class Retry:
    """How a failing stream is retried.

    Attributes:
        attempts: Most retries caused by model or content failures (guardrail, drift, a model
            error) per stream. These retries also count toward ``max_retries``.
        max_retries: Most retries of any kind per stream (network, timeouts, rate limits, zero
            output, and the above). Each fallback starts with fresh counters.
        base_delay: Seconds; the unit of the backoff formulas.
        max_delay: Seconds; no backoff delay is longer.
        strategy: One of :class:`BackoffStrategy` (default ``FIXED_JITTER``) or its name in
            any case with ``_`` or ``-`` (``"FIXED_JITTER"``, ``"fixed-jitter"``), or the name
            of a strategy a plugin implements through ``l0_backoff_delay``; ``l0.run`` fails
            at once when nothing computes it.
        max_retry_after: Longest server ``Retry-After`` that is waited out (seconds). A longer
            one stops retrying that stream: L0 goes to the next fallback or raises.
        seed: Seed of the jitter generator; the same seed gives the same delays.
        fallback_on: Failure kinds that move to the next fallback at once, without retrying
            the same stream, when a fallback is left (names from ``FAILURE_KINDS``). Default:
            a first-token timeout or a stall. ``"content_policy"`` is special: without it, a
            400 content-policy rejection of the request is raised to the caller and no
            fallback receives the same content; with it, that rejection goes to the fallback.
    """

    attempts: int = 3
    max_retries: int = 6
    base_delay: float = 1.0
    max_delay: float = 10.0
    strategy: BackoffStrategy | str = BackoffStrategy.FIXED_JITTER
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER
    seed: int | None = None
    fallback_on: Collection[str] = DEFAULT_FALLBACK_ON

    def __post_init__(self) -> None:
        _check_kinds(self)
        _check_number("attempts", self.attempts, minimum=0, integer=True)
        _check_number("max_retries", self.max_retries, minimum=0, integer=True)
        _check_number("base_delay", self.base_delay, minimum=0, integer=False)
        _check_number("max_delay", self.max_delay, minimum=0, integer=False)
        _check_number("max_retry_after", self.max_retry_after, minimum=0, integer=False)
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            raise TypeError(f"Retry(seed={self.seed!r}): expected an int or None")
        strategy: object = self.strategy
        if isinstance(strategy, BackoffStrategy):
            pass
        elif isinstance(strategy, str):
            # A name the builtin formulas do not know may belong to a backoff plugin; l0.run
            # checks that one computes it before any request.
            name = normalize_strategy(strategy)
            if name in BackoffStrategy._value2member_map_:
                object.__setattr__(self, "strategy", BackoffStrategy(name))
            elif not strategy.strip():
                raise ValueError(
                    "Retry(strategy=''): choose one of "
                    + ", ".join(s.value for s in BackoffStrategy)
                )
        else:
            raise TypeError(
                f"Retry(strategy={self.strategy!r}): expected a BackoffStrategy or a name; "
                "choose one of " + ", ".join(s.value for s in BackoffStrategy)
            )

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Names of the settings config may set."""
        return tuple(f.name for f in fields(cls))

    def with_changes(self, **changes: Any) -> Retry:
        """A copy with some settings changed (validated like the constructor)."""
        return replace(self, **changes)


def compute_backoff(retry_index: int, policy: Retry, rng: random.Random) -> float | None:
    """Delay in seconds before retry number ``retry_index`` (0-based), or ``None`` if unknown.

    ``None`` is returned for a strategy name the builtin formulas do not know, so a plugin that
    implements it through ``l0_backoff_delay`` is not shadowed.
    """
    base = policy.base_delay
    strategy = policy.strategy
    if strategy is BackoffStrategy.FIXED_JITTER:
        half = base / 2.0
        delay = half + rng.uniform(0.0, half)
    elif strategy is BackoffStrategy.EXPONENTIAL:
        delay = base * (2.0 ** min(retry_index, 64))
    elif strategy is BackoffStrategy.LINEAR:
        delay = base * (retry_index + 1)
    elif strategy is BackoffStrategy.FIXED:
        delay = base
    elif strategy is BackoffStrategy.FULL_JITTER:
        delay = rng.uniform(0.0, base * (2.0 ** min(retry_index, 64)))
    else:
        return None
    return min(delay, policy.max_delay)
