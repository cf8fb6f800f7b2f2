"""Error categorisation, retry decisions, backoff and giving up."""

from __future__ import annotations

import logging
from typing import Any

from l0._session_base import _OBS, SessionBase, _now
from l0.errors import (
    ErrorContext,
    GuardrailError,
    L0PluginError,
    ProviderUnavailableError,
    RetryBudgetExhaustedError,
    RetryExhaustedError,
    _builtin_category,
    attach_context,
    get_retry_after,
)
from l0.retry import compute_backoff
from l0.types import (
    BackoffStrategy,
    ErrorCategory,
    RetryDecision,
)

log = logging.getLogger("l0")


class DecisionsMixin(SessionBase):
    """Turning a failed attempt into retry, fallback or a raised error."""

    __slots__ = ()

    def _categorize(self, error: BaseException) -> ErrorCategory:
        try:
            answer = self._opts.plugins.hooks.categorize_error(error)
            if isinstance(answer, ErrorCategory):
                return answer
        except Exception:
            log.exception("l0: a categorize plugin raised on %r; using builtin rules", type(error))
        try:
            return _builtin_category(error)
        except Exception:  # pragma: no cover - written not to raise
            return ErrorCategory.MODEL

    def _decide(self, error: BaseException, category: ErrorCategory) -> RetryDecision:
        try:
            answer = self._opts.plugins.hooks.retry_decision(error, category, self.state.snapshot())
            if isinstance(answer, RetryDecision):
                return answer
            log.warning("l0: retry decision plugins returned %r; not retrying", answer)
        except Exception as exc:
            # A plugin bug must not look like a provider failure: name it in the reason that
            # on_error, RETRY_GIVE_UP and RetryExhaustedError carry.
            log.exception("l0: a retry decision plugin raised; not retrying")
            return RetryDecision(retry=False, reason=f"not retrying: {exc}")
        return RetryDecision(retry=False, reason="no valid retry decision")

    def _backoff(self, retry_index: int, error: BaseException) -> float:
        opts = self._opts
        try:
            delay = opts.plugins.hooks.backoff_delay(retry_index, opts.retry, error, opts.rng)
        except L0PluginError as exc:
            if "answer" in exc.details:
                raise  # a non-number answer: the plugin is named, nothing is retried on it
            log.exception("l0: a backoff plugin raised; using the builtin formula")
            delay = None
        except Exception:
            log.exception("l0: a backoff plugin raised; using the builtin formula")
            delay = None
        if delay is None:
            delay = compute_backoff(retry_index, opts.retry, opts.rng)
        if delay is None:
            # l0.run checked that a plugin computes this strategy; it was unregistered since.
            # Fall back to the default formula rather than hide the provider's error (#8).
            log.error(
                "l0: no plugin computes Retry(strategy=%r) any more; using fixed-jitter",
                opts.retry.strategy,
            )
            fallback = opts.retry.with_changes(strategy=BackoffStrategy.FIXED_JITTER)
            delay = compute_backoff(retry_index, fallback, opts.rng) or 0.0
        return max(0.0, min(float(delay), opts.retry.max_delay))

    def _will_retry(self, error: BaseException, category: ErrorCategory) -> tuple[bool, bool, str]:
        if self._abort_requested:
            return False, False, "aborted"
        if category is ErrorCategory.INTERNAL:
            return False, False, "internal error"
        if isinstance(error, ProviderUnavailableError):
            return False, False, error.reason
        decision = self._decide(error, category)
        reason = decision.reason or category.value
        if not decision.retry:
            return False, False, reason
        policy = self._opts.retry
        counted = decision.counts_toward_attempts
        # The budget is per stream: a fallback starts afresh.
        model, network = self._stream_retries
        if counted and model >= policy.attempts:
            return False, counted, f"{reason}; Retry.attempts={policy.attempts} used up"
        if model + network >= policy.max_retries:
            return False, counted, f"{reason}; Retry.max_retries={policy.max_retries} used up"
        retry_after = get_retry_after(error)
        if retry_after is not None and retry_after > policy.max_retry_after:
            return (
                False,
                counted,
                f"{reason}; Retry-After {retry_after:.0f}s exceeds "
                f"Retry.max_retry_after={policy.max_retry_after}s",
            )
        return True, counted, reason

    @staticmethod
    def _failure(error: BaseException) -> dict[str, Any]:
        """Event fields naming why an attempt ended: its error type and tripped rules.

        The guardrail rules (name, severity) let exporters mark the attempt without reading
        the per-check guardrail events.
        """
        violations = []
        if isinstance(error, GuardrailError):
            violations = [
                {"rule": v.rule, "severity": v.severity, "message": v.message}
                for v in error.violations
            ]
        return {
            "error_type": f"{type(error).__module__}.{type(error).__qualname__}",
            "violations": violations,
        }

    def _give_up(self, error: BaseException, category: ErrorCategory, reason: str) -> None:
        state = self.state
        state.ended_at = _now()
        state.error = error
        self.finished = True
        self._obs(
            _OBS.RETRY_GIVE_UP,
            attempts=state.attempt,
            last_error=repr(error),
            category=category.value,
            reason=reason,
            error_message=str(error),
            exception=error,
            **self._failure(error),
        )
        self._summary("error")
        if category in (ErrorCategory.FATAL, ErrorCategory.INTERNAL) or not isinstance(
            error, Exception
        ):
            attach_context(error, ErrorContext(category, list(self.errors), state.snapshot()))
            raise error
        health = self._health
        exhausted = (
            RetryBudgetExhaustedError
            if health is not None and health.refused
            else RetryExhaustedError
        )
        raise exhausted(
            f"gave up after {state.attempt} attempt(s) over {state.fallback_index + 1} "
            f"stream(s): {reason}; last error: {type(error).__name__}: {error}",
            last_error=error,
            errors=self.errors,
            state=state.snapshot(),
        ) from error
