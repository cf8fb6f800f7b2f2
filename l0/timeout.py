"""Time limits: the wait for the first token, the gap between tokens, the whole session."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["DEFAULT_INITIAL_TOKEN", "DEFAULT_INTER_TOKEN", "Timeout"]

DEFAULT_INITIAL_TOKEN = 60.0
"""Seconds from issuing the request to the first token. Reasoning models may think for tens of
seconds before they stream, so the default is generous; lower it for chat UIs."""

DEFAULT_INTER_TOKEN = 30.0
"""Seconds allowed between two tokens before the stream counts as stalled."""


def _check(name: str, value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"Timeout({name}={value!r}): expected seconds (a number > 0) or None")
    if math.isnan(value) or value <= 0:
        raise ValueError(f"Timeout({name}={value!r}): expected seconds (a number > 0) or None")


@dataclass(frozen=True, slots=True)
class Timeout:
    """Time limits on a stream. ``None`` turns a limit off.

    Attributes:
        initial_token: Seconds from issuing the request (calling the stream factory, awaiting
            it, receiving headers) to the first token.
        inter_token: Seconds the provider may stay silent between two tokens. Time the consumer
            spends handling an event does not count. With ``read()`` a stall is reported at
            most ``inter_token / 16`` late (no clock is read per token there).
        total: Seconds for the whole session: every attempt, backoff wait and fallback. No
            wait is started that would end after it; when it passes, the provider connection
            is closed and :class:`l0.errors.DeadlineExceededError` is raised. ``None`` (the
            default): no limit.
    """

    initial_token: float | None = DEFAULT_INITIAL_TOKEN
    inter_token: float | None = DEFAULT_INTER_TOKEN
    total: float | None = None

    def __post_init__(self) -> None:
        _check("initial_token", self.initial_token)
        _check("inter_token", self.inter_token)
        _check("total", self.total)
