"""Builtin backoff: the five strategies of ``l0.BackoffStrategy``."""

from __future__ import annotations

import random
from typing import Any

from l0.plugins import hookimpl
from l0.retry import Retry, compute_backoff


@hookimpl(trylast=True)
def l0_backoff_delay(
    attempt: int, policy: Any, error: BaseException, rng: random.Random
) -> float | None:
    """Answer for the builtin strategies; ``None`` for a strategy name only a plugin knows."""
    del error
    if not isinstance(policy, Retry):
        return None
    return compute_backoff(attempt, policy, rng)
