"""Public data types shared by the kernel and plugins.

Plugins may import this module freely: it imports nothing heavier than the standard library.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, Literal, NamedTuple, Protocol, TypeAlias, runtime_checkable

__all__ = [
    "Adapter",
    "AttemptContext",
    "AttemptUsage",
    "BackoffStrategy",
    "ErrorCategory",
    "Event",
    "EventType",
    "GuardrailViolation",
    "RetryDecision",
    "RetryPolicySpec",
    "Severity",
    "State",
    "StreamFactory",
]


class ErrorCategory(StrEnum):
    """What kind of failure an exception is, which decides how L0 reacts to it."""

    NETWORK = "network"
    """Dropped connections, DNS, TLS, socket errors, timeouts: retried on ``max_retries`` only."""
    TRANSIENT = "transient"
    """Rate limits, overloaded or failing servers (408/409/429/5xx): retried like NETWORK."""
    MODEL = "model"
    """The model misbehaved (refusal, malformed answer): retried, also uses ``attempts``."""
    CONTENT = "content"
    """A guardrail or drift check rejected the output: retried, also uses ``attempts``."""
    PROVIDER = "provider"
    """An API error with no clearer meaning: retried like MODEL."""
    FATAL = "fatal"
    """Authentication, permission or a bad request (401/403/other 4xx): never retried."""
    INTERNAL = "internal"
    """A programming error (wrong types, a non-stream): never retried, raised as is."""


class BackoffStrategy(StrEnum):
    """How the delay before a retry grows.

    ``base`` is ``Retry.base_delay`` and ``n`` the zero-based retry index; every result is
    capped at ``Retry.max_delay``.
    """

    EXPONENTIAL = "exponential"
    """``base * 2**n``."""
    LINEAR = "linear"
    """``base * (n + 1)``."""
    FIXED = "fixed"
    """``base``."""
    FULL_JITTER = "full-jitter"
    """A uniform draw in ``[0, base * 2**n]``."""
    FIXED_JITTER = "fixed-jitter"
    """``base / 2`` plus a uniform draw in ``[0, base / 2]`` (the default)."""


class EventType(StrEnum):
    """The kinds of stream event a consumer iterates over."""

    TOKEN = "token"
    TOOL_CALL = "tool_call"
    MESSAGE = "message"
    DATA = "data"
    PROGRESS = "progress"
    ERROR = "error"
    RESET = "reset"
    COMPLETE = "complete"


_TOKEN = EventType.TOKEN
_TOOL_CALL = EventType.TOOL_CALL
_ERROR = EventType.ERROR
_COMPLETE = EventType.COMPLETE
_RESET = EventType.RESET


class Event(NamedTuple):
    """One item of the stream a consumer iterates over.

    Events are immutable. Token events carry ``text``; tool calls carry ``data``
    (``{"id", "name", "arguments"}``); the final ``COMPLETE`` event carries ``usage``;
    ``ERROR`` events carry ``error`` and, in ``data``, whether L0 will retry or fall back.
    A ``RESET`` event says that text already delivered was withdrawn because a retry or
    fallback started over: ``data["withdrawn"]`` is that text and ``data["kept"]`` the
    number of characters of earlier content that stay.
    """

    type: EventType
    text: str | None = None
    data: Any = None
    usage: Mapping[str, Any] | None = None
    error: BaseException | None = None
    raw: Any = None

    @property
    def is_token(self) -> bool:
        """True for a text token."""
        return self.type is _TOKEN

    @property
    def is_tool_call(self) -> bool:
        """True for a complete tool call."""
        return self.type is _TOOL_CALL

    @property
    def is_complete(self) -> bool:
        """True for the final event of a successful stream."""
        return self.type is _COMPLETE

    @property
    def is_error(self) -> bool:
        """True for an error event (an attempt failed)."""
        return self.type is _ERROR

    @property
    def is_reset(self) -> bool:
        """True when delivered text was withdrawn because a retry or fallback started over."""
        return self.type is _RESET


Severity: TypeAlias = Literal["warning", "error", "fatal"]


@dataclass(frozen=True, slots=True, init=False)
class GuardrailViolation:
    """A problem a guardrail rule found in the output.

    A violation built without ``severity`` or ``recoverable`` takes them from the rule whose
    check returned it (``GuardrailRule(severity=...)``); one that sets them keeps its own.

    Attributes:
        rule: Name of the rule that found it.
        message: What is wrong, for humans.
        severity: ``warning`` (recorded only), ``error`` (retry) or ``fatal`` (stop); ``error``
            when not given.
        recoverable: Whether a retry may fix it; ``False`` stops without retrying; ``True``
            when not given.
        position: Character offset in the content, when known.
    """

    rule: str
    message: str
    severity: Severity = "error"
    recoverable: bool = True
    position: int | None = None
    # Which of severity/recoverable the caller left out, so the engine can fill them from the
    # rule (issue 8 item 4). Not compared, not printed.
    _unset: tuple[bool, bool] = field(default=(False, False), init=False, repr=False, compare=False)

    def __init__(
        self,
        rule: str,
        message: str,
        severity: Severity | None = None,
        recoverable: bool | None = None,
        position: int | None = None,
    ) -> None:
        setattr_ = object.__setattr__
        setattr_(self, "rule", rule)
        setattr_(self, "message", message)
        setattr_(self, "severity", "error" if severity is None else severity)
        setattr_(self, "recoverable", True if recoverable is None else recoverable)
        setattr_(self, "position", position)
        setattr_(self, "_unset", (severity is None, recoverable is None))


@dataclass(frozen=True, slots=True)
class AttemptUsage:
    """What one attempt cost and how much of it the answer kept.

    Attributes:
        attempt: Attempt number over the session.
        fallback_index: 0 for the primary stream, ``i`` for ``fallbacks[i - 1]``.
        outcome: ``"success"``, ``"continued"`` (a part of the answer, followed by a
            ``continue_on_length`` continuation), ``"error"`` (failed: dropped, timed out,
            cut by a guardrail …) or ``"hedge_lost"`` (closed because a hedge won).
        completion_tokens: Tokens the provider generated for this attempt (paid for).
        kept_tokens: The part of ``completion_tokens`` that is in the answer.
        prompt_tokens: Prompt tokens, when the provider reported usage; else ``None``.
        estimated: True when the provider reported no usage for this attempt and the counts
            are estimated from the characters streamed (4 characters a token).
        chars: Characters this attempt streamed, including any repeat L0 dropped.
    """

    attempt: int
    fallback_index: int
    outcome: str
    completion_tokens: int
    kept_tokens: int
    prompt_tokens: int | None
    estimated: bool
    chars: int


def _usage_maker() -> Callable[[int, int, str, int, int, int | None, bool, int], AttemptUsage]:
    # A frozen dataclass's __init__ sets each field through object.__setattr__ by name (about
    # 1.7 µs here); the slot descriptors do the same in a third of that, once per attempt.
    slots = AttemptUsage.__dict__
    setters = [slots[f.name].__set__ for f in fields(AttemptUsage)]
    (
        set_attempt,
        set_index,
        set_outcome,
        set_completion,
        set_kept,
        set_prompt,
        set_est,
        set_chars,
    ) = setters
    new = object.__new__

    def make(
        attempt: int,
        fallback_index: int,
        outcome: str,
        completion_tokens: int,
        kept_tokens: int,
        prompt_tokens: int | None,
        estimated: bool,
        chars: int,
    ) -> AttemptUsage:
        usage = new(AttemptUsage)
        set_attempt(usage, attempt)
        set_index(usage, fallback_index)
        set_outcome(usage, outcome)
        set_completion(usage, completion_tokens)
        set_kept(usage, kept_tokens)
        set_prompt(usage, prompt_tokens)
        set_est(usage, estimated)
        set_chars(usage, chars)
        return usage

    return make


_attempt_usage = _usage_maker()
"""``AttemptUsage(...)`` by position, for the session's per-attempt accounting."""


@dataclass(slots=True)
class State:
    """The live state of a session, readable at any time through ``result.state``.

    ``content``, ``token_count`` and ``checkpoint`` are computed from the tokens kept so far, so
    reading them is cheap and never stale; the other fields are updated at each transition.
    """

    _parts: list[str] = field(default_factory=list, repr=False)
    _prefix: str = field(default="", repr=False)
    _prefix_tokens: int = field(default=0, repr=False)
    _checkpoint_at: int = field(default=0, repr=False)
    _joined: str = field(default="", repr=False)
    _joined_n: int = field(default=0, repr=False)

    attempt: int = 0
    """Number of the current attempt, starting at 1, counted over the whole session."""
    fallback_index: int = 0
    """0 while the primary stream runs, ``i`` while ``fallbacks[i - 1]`` runs."""
    model_retry_count: int = 0
    """Retries so far that counted toward ``Retry.attempts``, over the whole session."""
    network_retry_count: int = 0
    """Retries so far that did not count toward ``Retry.attempts``, over the whole session."""
    total_retries: int = 0
    """Retries over the whole session, all streams together."""
    violations: list[GuardrailViolation] = field(default_factory=list)
    """Every guardrail violation found, in order, including those of abandoned attempts."""
    completed: bool = False
    aborted: bool = False
    resumed: bool = False
    """True when the content continues from a checkpoint of an earlier attempt."""
    resume_point: str | None = None
    """The checkpoint text the session continued from."""
    resume_from: int | None = None
    """Character offset in ``content`` where the continuation starts."""
    usage: Mapping[str, Any] | None = None
    finish_reason: str | None = None
    attempts: list[AttemptUsage] = field(default_factory=list)
    """Usage of every attempt that ran, failed ones included, in order."""
    length_continuations: int = 0
    """Continuations requested because an answer stopped at the token limit
    (``continue_on_length``)."""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    drift_detected: bool = False
    started_at: float | None = None
    """``time.monotonic()`` when the session started."""
    first_token_at: float | None = None
    """``time.monotonic()`` of the first token of the winning attempt."""
    ended_at: float | None = None
    error: BaseException | None = None
    """The error that ended the session, if it failed."""
    record_error: str | None = None
    """Why writing the ``record=`` file failed (set by ``wait_callbacks()``), else ``None``."""

    @property
    def content(self) -> str:
        """All text of the current answer (checkpoint prefix plus tokens of this attempt)."""
        parts = self._parts
        n = len(parts)
        if n != self._joined_n:
            if n > self._joined_n:
                self._joined += "".join(parts[self._joined_n :])
            else:
                self._joined = "".join(parts)
            self._joined_n = n
        return self._prefix + self._joined

    @property
    def token_count(self) -> int:
        """Number of tokens in ``content``."""
        return self._prefix_tokens + len(self._parts)

    @property
    def checkpoint(self) -> str:
        """The content up to the last checkpoint."""
        return self._prefix + "".join(self._parts[: self._checkpoint_at])

    @property
    def tokens_paid(self) -> int:
        """Completion tokens of every attempt, failed ones included."""
        return sum(usage.completion_tokens for usage in self.attempts)

    @property
    def tokens_kept(self) -> int:
        """The part of :attr:`tokens_paid` that is in the answer."""
        return sum(usage.kept_tokens for usage in self.attempts)

    @property
    def usage_estimated(self) -> bool:
        """True when any attempt's counts are estimated (its provider reported no usage)."""
        return any(usage.estimated for usage in self.attempts)

    @property
    def duration(self) -> float | None:
        """Seconds from the start of the session to its end (or to now, while it runs)."""
        if self.started_at is None:
            return None
        import time

        end = self.ended_at if self.ended_at is not None else time.monotonic()
        return end - self.started_at

    @property
    def time_to_first_token(self) -> float | None:
        """Seconds from the session start to the first token of the winning attempt."""
        if self.started_at is None or self.first_token_at is None:
            return None
        return self.first_token_at - self.started_at

    def snapshot(self) -> State:
        """A deep copy that later changes to the session do not touch."""
        clone = copy.copy(self)
        clone._parts = list(self._parts)
        clone.violations = list(self.violations)
        clone.attempts = list(self.attempts)
        clone.tool_calls = copy.deepcopy(self.tool_calls)
        clone.usage = copy.deepcopy(self.usage)
        return clone

    def _withdraw(self, chars: int) -> None:
        """Drop the last ``chars`` characters of this attempt's tokens, in place."""
        parts = self._parts
        while chars > 0 and parts:
            last = parts.pop()
            if len(last) > chars:
                parts.append(last[: len(last) - chars])
                break
            chars -= len(last)
        self._checkpoint_at = min(self._checkpoint_at, len(parts))
        self._joined = ""
        self._joined_n = 0

    def _reset_attempt(self, prefix: str = "", prefix_tokens: int = 0) -> None:
        """Drop this attempt's tokens, keeping ``prefix`` as the start of the content."""
        self._parts = []
        self._prefix = prefix
        self._prefix_tokens = prefix_tokens
        self._checkpoint_at = 0
        self._joined = ""
        self._joined_n = 0


@dataclass(frozen=True, slots=True)
class AttemptContext:
    """What a one-argument stream factory receives for each attempt.

    Attributes:
        attempt: Attempt number over the session, starting at 1.
        fallback_index: 0 for the primary stream, ``i`` for ``fallbacks[i - 1]``.
        is_retry: True when an earlier attempt of the same stream failed.
        is_fallback: True when this is a fallback stream.
        checkpoint: Text the answer continues from, when continuation is on, else ``""``.
        continuation_prompt: What ``build_continuation_prompt`` returned, if it was called.
        report_continuation: ``(strategy, rejected)``: a factory that chose how to continue
            (``"prefill"``, ``"user"``, ``"restart"`` …) says so here, with the strategies the
            provider rejected first; L0 emits ``CONTINUATION_STRATEGY``.
    """

    attempt: int
    fallback_index: int
    is_retry: bool
    is_fallback: bool
    checkpoint: str = ""
    continuation_prompt: str | None = None
    report_continuation: Callable[[str, tuple[str, ...]], None] | None = field(
        default=None, compare=False, repr=False
    )


StreamFactory: TypeAlias = "Callable[[], Any] | Callable[[AttemptContext], Any]"
"""A zero-argument callable, or one taking an :class:`AttemptContext`, returning a stream
(an async iterator) or an awaitable of one."""


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """The answer of ``l0_retry_decision``.

    Attributes:
        retry: Whether the failed attempt may run again (budgets still apply).
        counts_toward_attempts: Whether the retry uses ``Retry.attempts`` (model/content
            failures) besides ``Retry.max_retries``.
        reason: Short text for callbacks and events.
    """

    retry: bool
    counts_toward_attempts: bool = False
    reason: str = ""


@runtime_checkable
class Adapter(Protocol):
    """Turns a provider's stream into L0 events.

    ``wrap`` returns an async iterator of :class:`Event` or plain ``str`` tokens. It must keep
    text exactly as sent, end with exactly one ``COMPLETE`` event (or simply stop), and report
    a provider failure by raising it (L0 classifies and retries) or as an ``ERROR`` event.
    """

    name: str

    def detect(self, stream: Any) -> bool:
        """Return True if this adapter can handle ``stream``."""
        ...

    def wrap(self, stream: Any) -> AsyncIterator[Event | str]:
        """Convert ``stream`` into L0 events."""
        ...


@dataclass(frozen=True, slots=True)
class RetryPolicySpec:
    """A named retry policy that config may select (``retry.policy = "<name>"``).

    Attributes:
        name: The name config uses.
        factory: Builds the policy's ``Retry`` from the numbers config sets (keys are
            ``Retry`` field names; absent keys keep the policy's defaults).
        summary: One line for listings and error messages.
    """

    name: str
    factory: Callable[[Mapping[str, Any]], Any]
    summary: str = ""
