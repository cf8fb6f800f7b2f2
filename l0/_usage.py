"""What every attempt cost: provider usage when reported, else an estimate from characters.

``SessionBase._account`` records an attempt when it ends (never per token).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from l0.types import AttemptUsage

CHARS_PER_TOKEN = 4
"""Characters per token of the estimate used when a provider reports no usage."""


def usage_int(usage: Mapping[str, Any] | None, *names: str) -> int | None:
    if usage is None:
        return None
    for name in names:
        value = usage.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def usage_summary(attempts: list[AttemptUsage]) -> dict[str, Any]:
    """Totals and per-attempt rows, as the COMPLETE event and SESSION_SUMMARY carry them."""
    return {
        "tokens_paid": sum(a.completion_tokens for a in attempts),
        "tokens_kept": sum(a.kept_tokens for a in attempts),
        "usage_estimated": any(a.estimated for a in attempts),
        "attempt_usage": [
            {
                "attempt": a.attempt,
                "fallback_index": a.fallback_index,
                "outcome": a.outcome,
                "completion_tokens": a.completion_tokens,
                "kept_tokens": a.kept_tokens,
                "prompt_tokens": a.prompt_tokens,
                "estimated": a.estimated,
            }
            for a in attempts
        ],
    }
