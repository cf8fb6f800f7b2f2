"""Error categorisation, retry decisions, backoff and giving up."""

from __future__ import annotations

import contextlib
import logging
import re
from typing import Any, NamedTuple

from l0._session_base import _INF, _OBS, SessionBase, _now
from l0.errors import (
    DeadlineExceededError,
    ErrorContext,
    GuardrailError,
    InitialTokenTimeoutError,
    InterTokenTimeoutError,
    L0PluginError,
    ProviderUnavailableError,
    RetryBudgetExhaustedError,
    RetryExhaustedError,
    ZeroOutputError,
    _builtin_category,
    attach_context,
    get_retry_after,
    get_status_code,
)
from l0.retry import compute_backoff
from l0.types import (
    BackoffStrategy,
    ErrorCategory,
    RetryDecision,
)

log = logging.getLogger("l0")


_CONTENT_POLICY_RE = re.compile(
    r"content[_ ]policy|content[_ ]filter|content management policy|safety system", re.I
)


def is_content_policy(error: BaseException) -> bool:
    """True when ``error`` is a provider's HTTP 400 rejecting the request's content.

    OpenAI-style providers answer ``400`` with code ``content_policy_violation`` or
    ``content_filter`` (Azure); the code, the type and the message are looked at.
    """
    if get_status_code(error) != 400:
        return False
    parts = [str(getattr(error, name, "") or "") for name in ("code", "type")]
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            parts += [str(inner.get(k) or "") for k in ("code", "type", "message")]
    with contextlib.suppress(Exception):
        parts.append(str(error))
    return any(_CONTENT_POLICY_RE.search(part) for part in parts if part)


class _Route(NamedTuple):
    """What happens after a failed attempt."""

    retry: bool
    counted: bool
    reason: str
    fallback: bool
    delay: float


def failure_kind(error: BaseException, category: ErrorCategory) -> str | None:
    """The ``Retry.fallback_on`` name of a failure, or None for kinds the policy cannot name."""
    if isinstance(error, InitialTokenTimeoutError):
        return "initial_token_timeout"
    if isinstance(error, InterTokenTimeoutError):
        return "inter_token_timeout"
    if isinstance(error, ZeroOutputError):
        return "zero_output"
    status = get_status_code(error)
    if status == 429:
        return "rate_limit"
    if status is not None and status >= 500:
        return "server_error"
    if is_content_policy(error):
        return "content_policy"
    if category is ErrorCategory.NETWORK:
        return "network"
    return None


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

    def _route(
        self, error: BaseException, category: ErrorCategory, retry_index: int, has_fallback: bool
    ) -> _Route:
        """Retry the same stream, move to the fallback, or raise; and the wait before a retry.

        The builtin retry decision and budgets apply, overridden by ``Retry.fallback_on``
        (failure kinds that go to the fallback at once, and content-policy rejections that are
        raised unless listed) and by ``Timeout.total`` (no wait that would end past it).
        """
        policy = self._opts.retry
        if isinstance(error, DeadlineExceededError):
            return _Route(False, False, f"Timeout.total={error.configured}s passed", False, 0.0)
        kind = failure_kind(error, category)
        if kind is not None and not self._abort_requested:
            listed = kind in policy.fallback_on
            if kind == "content_policy" and not listed:
                reason = (
                    "the provider rejected the request's content (400 content policy); "
                    "not sent to a fallback (add 'content_policy' to Retry.fallback_on)"
                )
                self._obs(_OBS.FAILURE_ROUTED, failure=kind, decision="raise", reason=reason)
                return _Route(False, False, reason, False, 0.0)
            if listed and has_fallback:
                reason = f"{kind}: moving to the fallback at once (Retry.fallback_on)"
                self._obs(_OBS.FAILURE_ROUTED, failure=kind, decision="fallback", reason=reason)
                return _Route(False, False, reason, True, 0.0)
        hedged = self._hedged_to and has_fallback and not self._abort_requested
        if hedged and category is not ErrorCategory.INTERNAL:
            # The hedge on the next stream won this attempt: that stream is the current one
            # now, so its own retries follow (as a fallback, with fresh counters).
            reason = f"{kind or category.value}: the hedge that won runs on that fallback"
            return _Route(False, False, reason, True, 0.0)
        will_retry, counted, reason = self._will_retry(error, category)
        fallback = not will_retry and category is not ErrorCategory.INTERNAL and has_fallback
        delay = 0.0
        if will_retry:
            delay = self._backoff(retry_index, error)
            retry_after = get_retry_after(error)
            if retry_after is not None:
                delay = max(delay, retry_after)
            left = self._deadline - _now()
            if self._deadline < _INF and delay >= left:
                will_retry = False
                total = self._opts.timeout.total
                reason = (
                    f"{reason}; waiting {delay:.2f}s would pass Timeout.total={total}s "
                    f"({max(left, 0.0):.2f}s left)"
                )
                fallback = has_fallback
                if not fallback:
                    self._deadline_hit = True
                self._obs(
                    _OBS.FAILURE_ROUTED,
                    failure=kind or category.value,
                    decision="fallback" if fallback else "raise",
                    reason=reason,
                )
        return _Route(will_retry, counted, reason, fallback, delay)

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
        if isinstance(error, DeadlineExceededError) or self._deadline_hit:
            total = self._opts.timeout.total or 0.0
            deadline = (
                error
                if isinstance(error, DeadlineExceededError)
                else DeadlineExceededError(
                    f"Timeout.total={total}s: {reason}; last error: {type(error).__name__}: "
                    f"{error}",
                    elapsed=_now() - (state.started_at or 0.0),
                    configured=total,
                )
            )
            deadline.errors = list(self.errors)
            deadline.state = state.snapshot()
            attach_context(deadline, ErrorContext(category, list(self.errors), state.snapshot()))
            if deadline is error:
                raise deadline
            raise deadline from error
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
