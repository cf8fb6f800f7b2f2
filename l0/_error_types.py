"""L0's exception classes and the context it attaches to provider errors.

Split from :mod:`l0.errors` (which re-exports every name here, and is the public import path)
so that the error types and the rules that categorise errors stay separate modules.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from l0.types import ErrorCategory

if TYPE_CHECKING:
    from l0.types import State

log = logging.getLogger("l0")


class L0Error(Exception):
    """Base class of every error L0 raises itself."""

    code: ClassVar[str] = "l0_error"
    category: ClassVar[ErrorCategory] = ErrorCategory.INTERNAL
    hint: ClassVar[str] = ""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return self.message


class ConfigError(L0Error, ValueError):
    """Configuration (file, environment or arguments) is invalid."""

    code = "config_error"
    hint = "Fix the key or value named in the message; l0.config.load_config() shows the rest."


class ConfigWarning(UserWarning):
    """A configuration problem L0 ignores, such as an unknown ``L0_*`` environment variable.

    Given once per problem and process; the message names the closest known name.
    """


class L0PluginError(L0Error):
    """A plugin failed to load, or plugins disagree (two policies with one name…)."""

    code = "plugin_error"
    hint = "Check the plugin named in the message, or disable it with L0_DISABLE_PLUGINS."


class InvalidStreamError(L0Error, TypeError):
    """The stream factory returned something L0 cannot iterate."""

    code = "invalid_stream"
    hint = "Return an async iterator (or an awaitable of one) from the stream factory."


class AdapterNotFoundError(InvalidStreamError):
    """No adapter recognised the stream."""

    code = "adapter_not_found"
    hint = (
        "Install the adapter distribution for your SDK (l0-openai, l0-litellm), pass "
        "adapter=..., or register one with l0.Adapters.register()."
    )


class UnsupportedClientError(InvalidStreamError):
    """``l0.wrap`` got an SDK client L0 cannot drive, such as the synchronous ``openai.OpenAI``."""

    code = "unsupported_client"
    hint = "L0 streams are async: wrap the SDK's async client (openai.AsyncOpenAI) instead."


class StreamTimeoutError(L0Error, TimeoutError):
    """The provider sent nothing for too long. Retried as a network failure."""

    code = "timeout"
    category = ErrorCategory.NETWORK
    hint = "Raise l0.Timeout(...) if the model is legitimately slow."
    timeout_type: ClassVar[str] = ""

    def __init__(self, message: str, *, elapsed: float, configured: float) -> None:
        super().__init__(message, elapsed=elapsed, configured=configured)
        self.elapsed = elapsed
        self.configured = configured


class InitialTokenTimeoutError(StreamTimeoutError):
    """No first token arrived within ``Timeout.initial_token`` of issuing the request."""

    code = "initial_token_timeout"
    timeout_type = "initial"


class InterTokenTimeoutError(StreamTimeoutError):
    """The stream stalled: no token for ``Timeout.inter_token`` seconds."""

    code = "inter_token_timeout"
    timeout_type = "inter"


class DeadlineExceededError(StreamTimeoutError):
    """``Timeout(total=...)`` passed: the session ends, whatever retries or fallbacks remain.

    Raised when the deadline passes during an attempt (the provider connection is closed at
    once) or when the next wait (backoff or ``Retry-After``) would end after it and no fallback
    is left. Never retried.

    Attributes:
        errors: One :class:`AttemptError` per failed attempt before the deadline.
        state: The session state when it ended (``None`` until the session sets it).
    """

    code = "deadline_exceeded"
    category = ErrorCategory.FATAL
    hint = "Raise Timeout(total=...), or lower the per-attempt limits so fallbacks get a turn."
    timeout_type = "total"

    def __init__(self, message: str, *, elapsed: float, configured: float) -> None:
        super().__init__(message, elapsed=elapsed, configured=configured)
        self.errors: list[AttemptError] = []
        self.state: State | None = None


class ZeroOutputError(L0Error):
    """The stream ended without any non-whitespace output. Retried without using ``attempts``."""

    code = "zero_output"
    category = ErrorCategory.TRANSIENT
    hint = "The provider returned an empty answer; check the prompt if this repeats."


class GuardrailError(L0Error):
    """A guardrail rejected the output."""

    code = "guardrail_violation"
    category = ErrorCategory.CONTENT
    hint = "Inspect result.state.violations; adjust the prompt or the rule."

    def __init__(self, message: str, violations: Sequence[Any] = (), *, fatal: bool = False):
        super().__init__(message, violations=list(violations))
        self.violations = list(violations)
        self.fatal = fatal


class StructuredOutputError(L0Error):
    """``l0.structured`` got no answer that parses as JSON and validates against the schema.

    Each rejected answer was retried as a content failure (``Retry.attempts``); this is raised
    when no attempt is left.

    Attributes:
        raw: The text of the last answer.
        validation_errors: Why it was rejected, in pydantic's ``errors()`` format (a JSON
            syntax problem is one entry of type ``json_invalid``).
        corrections: What auto-correction changed in the last answer before it was validated.
        attempts: How many answers were received and rejected.
    """

    code = "structured_output_invalid"
    category = ErrorCategory.CONTENT
    hint = (
        "See .validation_errors and .raw; ask for the JSON shape in the prompt, raise "
        "Retry(attempts=...), or install l0[structured] for more JSON repairs."
    )

    def __init__(
        self,
        message: str,
        *,
        raw: str,
        validation_errors: Sequence[Any] = (),
        corrections: Sequence[str] = (),
        attempts: int = 0,
    ) -> None:
        super().__init__(message, raw=raw, validation_errors=list(validation_errors))
        self.raw = raw
        self.validation_errors = list(validation_errors)
        self.corrections = list(corrections)
        self.attempts = attempts


class DriftError(L0Error):
    """Drift detection found the output degrading."""

    code = "drift_detected"
    category = ErrorCategory.CONTENT
    hint = "Inspect the DRIFT_CHECK_RESULT events; lower the temperature or tighten the prompt."


class GuardrailCheckError(L0Error):
    """A guardrail rule or drift detector raised: a bug in the check, not a model failure.

    Raised at once (an internal error: never retried, never a fallback), chained to the original
    exception. ``details`` carries ``rule`` (or ``detector``) and ``plugin`` (``None`` when the
    rule was built in-process).
    """

    code = "check_error"
    hint = "Fix the rule or detector named in the message, or leave it out of guardrails=/drift=."


class ToolCallError(L0Error):
    """A tool call arrived broken (arguments not a JSON object). Retried as a model error."""

    code = "tool_call_invalid"
    category = ErrorCategory.MODEL
    hint = "The model produced malformed tool arguments; a retry usually fixes it."


class MalformedChunkError(L0Error):
    """The provider sent a stream chunk that is not valid JSON.

    A garbled chunk is a glitch of the server or of a proxy on the way, not of the request, so
    it is retried like a rate limit (``TRANSIENT``: ``Retry.max_retries`` only).
    """

    code = "malformed_chunk"
    category = ErrorCategory.TRANSIENT
    hint = "The provider (or a proxy) sent a broken stream chunk; a retry usually fixes it."


class IncompleteStreamError(L0Error):
    """The stream ended before the provider said why it stopped (no ``finish_reason``).

    OpenAI-compatible servers always end an answer with a ``finish_reason``; a stream that just
    stops was cut on the way (a proxy or load balancer closed the connection cleanly), so its
    text is incomplete. Retried as a ``NETWORK`` failure.
    """

    code = "incomplete_stream"
    category = ErrorCategory.NETWORK
    hint = "The connection closed before the answer finished; a retry usually fixes it."


class RefusalError(L0Error):
    """The model declined to answer (OpenAI's ``refusal`` instead of content).

    A refusal is the model's answer, not a transport glitch: it is a ``MODEL`` error, retried
    within ``Retry.attempts`` (models are not deterministic) and then handed to the fallbacks,
    which may use a model that answers.

    Attributes:
        refusal: The whole refusal text the model sent.
    """

    code = "refusal"
    category = ErrorCategory.MODEL
    hint = (
        "The model refused the request; rephrase the prompt or add a fallback model. The "
        "refusal text is in .refusal (RetryExhaustedError.last_error.refusal)."
    )

    def __init__(self, message: str, *, refusal: str) -> None:
        super().__init__(message, refusal=refusal)
        self.refusal = refusal


class TruncatedError(L0Error):
    """The answer stopped at the token limit and ``retry_on_length`` asked for a retry.

    Raised for ``finish_reason="length"``; counts toward ``Retry.attempts``.
    """

    code = "truncated"
    category = ErrorCategory.MODEL
    hint = "Raise max_tokens, or accept truncated answers (retry_on_length=False)."


class AbortedError(L0Error):
    """The session was aborted with ``result.abort()``."""

    code = "aborted"
    hint = "Raised because abort() was called; nothing to fix."


@dataclass(frozen=True, slots=True)
class AttemptError:
    """One failed attempt, as recorded by a session."""

    attempt: int
    fallback_index: int
    error: BaseException
    category: ErrorCategory


class RetryExhaustedError(L0Error):
    """Every attempt of every stream failed.

    Attributes:
        last_error: The error of the last attempt (also ``__cause__``).
        errors: One :class:`AttemptError` per failed attempt, in order.
        state: The session state when it gave up.
    """

    code = "retry_exhausted"
    hint = "See .errors for each attempt; add fallbacks or raise Retry(max_retries=...)."

    def __init__(
        self,
        message: str,
        *,
        last_error: BaseException,
        errors: Sequence[AttemptError],
        state: State,
    ) -> None:
        super().__init__(message)
        self.last_error = last_error
        self.errors = list(errors)
        self.state = state

    @property
    def category(self) -> ErrorCategory:  # type: ignore[override]
        """The category of the last attempt's error."""
        return self.errors[-1].category if self.errors else ErrorCategory.INTERNAL


@dataclass(slots=True)
class ErrorContext:
    """What L0 attaches (as ``exc.l0``) to a provider error it re-raises."""

    category: ErrorCategory
    attempts: list[AttemptError] = field(default_factory=list)
    state: State | None = None


def attach_context(error: BaseException, context: ErrorContext) -> None:
    """Attach ``context`` to a provider error as ``error.l0`` and a note, never raising."""
    try:
        error.l0 = context  # type: ignore[attr-defined]
    except Exception:
        log.debug("l0: cannot set .l0 on %r", type(error))
    try:
        attempts = len(context.attempts)
        error.add_note(f"[l0] {context.category.value} error; {attempts} attempt(s) failed")
    except Exception:
        log.debug("l0: cannot add a note to %r", type(error))


# --- provider health (l0.health) -------------------------------------------------------------


class ProviderUnavailableError(L0Error):
    """Provider health refused an attempt before any request was sent; never retried.

    A session with a fallback moves to it; one without raises this error.

    Attributes:
        key: The provider health key (``base URL|model``, or the ``provider=`` given).
        retry_in: Seconds until the key may be tried again.
        until: When that is, as an aware UTC ``datetime``.
    """

    code = "provider_unavailable"
    category = ErrorCategory.FATAL
    what: ClassVar[str] = "unavailable"

    def __init__(self, key: str, retry_in: float) -> None:
        import datetime

        until = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=retry_in)
        super().__init__(
            f"provider {key!r} is {self.what} until {until:%H:%M:%S} UTC "
            f"(in {retry_in:.1f}s); no request was sent",
            key=key,
            retry_in=retry_in,
        )
        self.key = key
        self.retry_in = retry_in
        self.until = until
        self.reason = f"provider {key!r} is {self.what}"
        """A short, stable reason (no times), as reported to ``on_fallback``."""


class CircuitOpenError(ProviderUnavailableError):
    """The circuit of this provider is open after repeated outage failures."""

    code = "circuit_open"
    what = "failing: its circuit is open"
    hint = "Add a fallback, or tune [tool.l0.health] failure_threshold / open_seconds."


class RetryAfterWindowError(ProviderUnavailableError):
    """A shared ``Retry-After`` holds this provider back (longer than ``max_retry_after``)."""

    code = "retry_after_window"
    what = "rate limited: its Retry-After window runs"
    hint = "Add a fallback, or raise Retry(max_retry_after=...) to wait the window out."


class RetryBudgetExhaustedError(RetryExhaustedError):
    """A retry was refused by the provider's retry budget (``[tool.l0.health] retry_budget``)."""

    code = "retry_budget_exhausted"
    hint = "Retries are limited to a share of requests so overloads do not become retry storms."


def context_of(error: BaseException) -> ErrorContext | None:
    """The :class:`ErrorContext` L0 attached to a provider error it re-raised, if any.

    The typed way to read ``error.l0``: ``context_of(error).category`` passes ``mypy --strict``
    where ``error.l0.category`` does not.

    Args:
        error: Any exception.

    Returns:
        The context, or ``None`` when L0 did not re-raise this error.
    """
    context = getattr(error, "l0", None)
    return context if isinstance(context, ErrorContext) else None


def _public_module(namespace: dict[str, Any], module: str) -> None:
    """Name ``module`` as home of the classes and functions defined in ``namespace``.

    Tracebacks, pickles, ``repr`` and the ``error_type`` of observability events print
    ``l0.errors.RetryExhaustedError`` as they did before this module was split off.
    """
    here = namespace["__name__"]
    for name, value in list(namespace.items()):
        if not name.startswith("_") and callable(value) and value.__module__ == here:
            value.__module__ = module


_public_module(globals(), "l0.errors")
