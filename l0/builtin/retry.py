"""Builtin retry decision, following the retry table of the docs."""

from __future__ import annotations

from l0.errors import GuardrailError
from l0.plugins import hookimpl
from l0.types import ErrorCategory, RetryDecision, State

_COUNTED = frozenset({ErrorCategory.MODEL, ErrorCategory.CONTENT, ErrorCategory.PROVIDER})
_FREE = frozenset({ErrorCategory.NETWORK, ErrorCategory.TRANSIENT})


@hookimpl(trylast=True)
def l0_retry_decision(
    error: BaseException, category: ErrorCategory, state: State
) -> RetryDecision | None:
    """Network/transient failures retry for free; model/content ones use ``attempts``.

    Fatal and internal errors never retry, nor does a guardrail violation marked fatal or
    not recoverable.
    """
    del state
    if isinstance(error, GuardrailError) and error.fatal:
        return RetryDecision(retry=False, reason="fatal guardrail violation")
    if category in _FREE:
        return RetryDecision(retry=True, counts_toward_attempts=False, reason=category.value)
    if category in _COUNTED:
        return RetryDecision(retry=True, counts_toward_attempts=True, reason=category.value)
    return RetryDecision(retry=False, reason=f"{category.value} errors are not retried")
