"""Text rules: Markdown fences, meta/refusal patterns, zero output, stalls, repetition.

Every rule keeps incremental state per attempt and touches each character a bounded number of
times: Markdown looks at the first few characters of each line, patterns rescan only a short
tail of the previous text, repetition probes a bounded window.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any, Final

from l0.guardrails import GuardrailContext, GuardrailRule
from l0.types import GuardrailViolation, Severity, State
from l0_guardrails.repetition import RepetitionSession, _is_int, loop_period, repetition_rule

__all__ = [
    "DEFAULT_PATTERNS",
    "RepetitionSession",
    "custom_pattern_rule",
    "loop_period",
    "markdown_rule",
    "pattern_rule",
    "repetition_rule",
    "stall_rule",
    "zero_output_rule",
]


# --- markdown --------------------------------------------------------------------------------

_LINE_HEAD: Final = 16
_FENCE: Final = re.compile(r" {0,3}(`{3,}|~{3,})")
# Locates the lines of a batch that may hold a fence (from the newline before each); ``_FENCE``
# then judges their heads. A literal first character lets the regex engine skip to each
# newline in C, where a MULTILINE ``^`` is tried at every position: 7x less per batch.
_FENCE_LINE: Final = re.compile(r"\n {0,3}(?:`{3}|~{3})")
_MARKDOWN_BATCH: Final = 2048


class MarkdownSession:
    """Tracks code fences line by line, reading at most the first 16 characters of a line.

    Fences only matter at the end, so text is queued and read in batches of about 2 KB: per
    check the session only appends, and a regex finds the few lines of a batch that start like
    a fence. The verdict does not depend on how the text was cut into deltas.
    """

    __slots__ = (
        "_fence",
        "_fence_at",
        "_head",
        "_line_start",
        "_offset",
        "_pending",
        "_pending_len",
        "_rule",
    )

    def __init__(self, rule: GuardrailRule) -> None:
        self._rule = rule
        self._head = ""  # the first characters of the line still open at the end of the text
        self._line_start = 0
        self._fence: str | None = None
        self._fence_at = 0
        self._offset = 0
        self._pending: list[str] = []
        self._pending_len = 0

    def _line(self, head: str, start: int) -> None:
        match = _FENCE.match(head)
        if match is None:
            return
        marker = match.group(1)
        fence = self._fence
        if fence is None:
            self._fence = marker
            self._fence_at = start
        # A closing fence uses the same character, at least as many times, and nothing else.
        elif (
            marker[0] == fence[0] and len(marker) >= len(fence) and not head[match.end() :].strip()
        ):
            self._fence = None

    @property
    def wants(self) -> int:
        """Characters to queue before the next batch is read (the engine may hold them)."""
        return _MARKDOWN_BATCH - self._pending_len

    def feed(self, delta: str, state: State | None) -> None:
        """Queue ``delta``; fences may legitimately be open mid-stream."""
        self._pending.append(delta)
        self._pending_len += len(delta)
        if self._pending_len >= _MARKDOWN_BATCH:
            self._advance()

    def _advance(self) -> None:
        pending = self._pending
        text = pending[0] if len(pending) == 1 else "".join(pending)
        pending.clear()
        self._pending_len = 0
        base = self._offset
        self._offset = base + len(text)
        head = self._head
        first = text.find("\n")
        if first < 0:
            if len(head) < _LINE_HEAD:
                self._head = head + text[: _LINE_HEAD - len(head)]
            return
        self._line(head + text[: min(first, _LINE_HEAD - len(head))], self._line_start)
        last = text.rfind("\n")
        for match in _FENCE_LINE.finditer(text, first, last + 1):
            start = match.start() + 1
            self._line(text[start : min(text.find("\n", start), start + _LINE_HEAD)], base + start)
        self._head = text[last + 1 : last + 1 + _LINE_HEAD]
        self._line_start = base + last + 1

    def finish(self, context: GuardrailContext) -> list[GuardrailViolation] | None:
        """An open fence at the end means the answer was cut off."""
        if self._pending:
            self._advance()
        if self._head:
            self._line(self._head, self._line_start)
            self._head = ""
        if self._fence is None:
            return None
        return [
            self._rule.violation(
                f"code fence {self._fence!r} opened here is never closed",
                position=self._fence_at,
            )
        ]


def markdown_rule(*, severity: Severity = "error", recoverable: bool = True) -> GuardrailRule:
    """Markdown whose code fences (```` ``` ```` / ``~~~``) are all closed at the end."""
    return GuardrailRule(
        "markdown",
        streaming=True,
        severity=severity,
        recoverable=recoverable,
        description="code fences are closed by the end of the output",
        session=MarkdownSession,
    )


# --- patterns --------------------------------------------------------------------------------

_Q = "['\u2019]"
# "I cannot", "I can't", "I'm unable to", "I am not able to", "I won't": the contracted forms
# start right after the "i" (issue 8 item 11), the others after a space.
_I_CANNOT = (
    rf"i(?: cannot| can{_Q}t| can not| won{_Q}t| am unable to|{_Q}m unable to"
    rf"| am not able to|{_Q}m not able to)(?: actually| really| currently| simply)?"
)
DEFAULT_PATTERNS: Final[tuple[tuple[str, str], ...]] = (
    (r"\bas an ai(?: language model| assistant| model)?\b", "meta statement: 'As an AI…'"),
    (
        rf"\bi(?:{_Q}m| am) (?:just |only )?an? (?:ai|language model|artificial intelligence)\b",
        "meta statement: 'I'm just an AI'",
    ),
    (
        rf"\b{_I_CANNOT} (?:help|assist)(?: you)? with (?:that|this|your request|the request)\b",
        "refusal: 'I cannot help with that'",
    ),
    (
        rf"\b{_I_CANNOT} (?:provide|share|give you|disclose|offer) (?:that|this|such|the requested)"
        r" (?:information|data|details|content)\b",
        "refusal: 'I cannot provide that information'",
    ),
    (
        rf"\b{_I_CANNOT} (?:perform|complete|do|fulfill|carry out) (?:that|this) "
        r"(?:task|request|action)(?: for you)?\b",
        "refusal: 'I cannot perform that task'",
    ),
    (
        rf"\bi(?:{_Q}m| am) sorry,? but i(?: cannot| can{_Q}t| can not| won{_Q}t| am unable to"
        rf"|{_Q}m unable to| am not able to|{_Q}m not able to)\b",
        "refusal: 'I'm sorry, but I cannot'",
    ),
)
# The default patterns all start with "as" or "i": a lookahead on those letters lets the regex
# engine skip every other position in C (about 4x faster on ordinary prose).
_DEFAULT_PREFILTER: Final = "(?=[aAiI])"
# Every default pattern contains one of these (lowercased); a batch without any skips the regex.
# Substring search runs at memchr speed, a few times faster than the regex (issue 4/8 bench).
# "can" covers cannot / can't / can not, "won" won't; six needles keep the gate as cheap as the
# original list.
_DEFAULT_NEEDLES: Final = ("an ai", "a language model", "an artificial", "can", "won", "able to")


def _compile(
    rule_name: str, patterns: Sequence[Any], default_message: str, flags: int
) -> tuple[re.Pattern[str], dict[str, str]]:
    """One alternation with a named group per pattern, plus each group's message."""
    if isinstance(patterns, str | bytes) or not isinstance(patterns, Sequence):
        raise TypeError(
            f"guardrail rule {rule_name!r}: patterns={patterns!r}: expected a list of regular "
            "expressions (str or (regex, message) pairs)"
        )
    if not patterns:
        raise ValueError(f"guardrail rule {rule_name!r}: patterns is empty")
    parts, messages = [], {}
    for index, item in enumerate(patterns):
        if isinstance(item, tuple) and len(item) == 2:
            source, message = item
        else:
            source, message = item, default_message or f"matched {item!r}"
        if isinstance(source, re.Pattern):
            source = source.pattern
        if not isinstance(source, str) or not isinstance(message, str):
            raise TypeError(
                f"guardrail rule {rule_name!r}: pattern {item!r} is not a regex string or a "
                "(regex, message) pair"
            )
        try:
            re.compile(source, flags)
        except re.error as exc:
            raise ValueError(
                f"guardrail rule {rule_name!r}: pattern {source!r} is not a valid regular "
                f"expression: {exc}"
            ) from None
        group = f"p{index}"
        parts.append(f"(?P<{group}>{source})")
        messages[group] = message
    prefix = _DEFAULT_PREFILTER if list(patterns) == list(DEFAULT_PATTERNS) else ""
    try:
        combined = re.compile(prefix + "(?:" + "|".join(parts) + ")", flags)
    except re.error as exc:  # e.g. inline global flags that only work at the very start
        raise ValueError(
            f"guardrail rule {rule_name!r}: the patterns cannot be combined ({exc}); "
            "use (?i:...) scoped flags instead of leading (?i)"
        ) from None
    return combined, messages


class PatternSession:
    """Scans new text plus a bounded tail of the old, so matches across deltas are found.

    The first ``eager`` characters are scanned at every check (meta statements come first);
    after that, text is scanned in batches of ``batch`` characters, which keeps regex start-up
    costs off the per-check path. Every match is reported once.
    """

    __slots__ = (
        "_batch",
        "_eager",
        "_messages",
        "_needles",
        "_next",
        "_pending",
        "_pending_len",
        "_regex",
        "_rule",
        "_seen",
        "_tail",
        "_tail_len",
    )

    def __init__(
        self,
        rule: GuardrailRule,
        regex: re.Pattern[str],
        messages: dict[str, str],
        tail: int,
        batch: int,
        eager: int,
        needles: tuple[str, ...] | None = None,
    ) -> None:
        self._rule = rule
        self._needles = needles
        self._regex = regex
        self._messages = messages
        self._tail_len = tail
        self._batch = batch
        self._eager = eager
        self._tail = ""
        self._pending: list[str] = []
        self._pending_len = 0
        self._seen = 0
        self._next = 0

    @property
    def wants(self) -> int:
        """Characters before the next scan: any while in the eager prefix, then a batch."""
        return 1 if self._seen < self._eager else self._batch - self._pending_len

    def feed(self, delta: str, state: State | None) -> list[GuardrailViolation] | None:
        """Queue ``delta``; scan when the batch is full (or while in the eager prefix)."""
        self._pending.append(delta)
        self._pending_len += len(delta)
        if self._pending_len < self._batch and self._seen >= self._eager:
            return None
        return self._scan()

    def _scan(self) -> list[GuardrailViolation] | None:
        tail = self._tail
        text = tail + "".join(self._pending) if len(self._pending) != 1 else tail + self._pending[0]
        base = self._seen - len(tail)
        self._seen += self._pending_len
        self._pending = []
        self._pending_len = 0
        self._tail = text[-self._tail_len :]
        found = None
        needles = self._needles
        if needles is not None:
            lowered = text.lower()
            for needle in needles:  # a loop, not any(<genexpr>): no generator per scan
                if needle in lowered:
                    break
            else:
                return None
        old = len(tail)
        for match in self._regex.finditer(text):
            if match.end() <= old or base + match.start() < self._next:
                continue
            self._next = base + match.end()
            message = self._messages.get(match.lastgroup or "", "matched a forbidden pattern")
            if found is None:
                found = []
            found.append(
                self._rule.violation(f"{message}: {match.group()!r}", position=base + match.start())
            )
        return found

    def finish(self, context: GuardrailContext) -> list[GuardrailViolation] | None:
        """Scan whatever is still queued."""
        return self._scan() if self._pending else None


def _pattern_rule(
    name: str,
    patterns: Sequence[Any],
    *,
    message: str,
    severity: Severity,
    recoverable: bool,
    ignore_case: bool,
    tail: int,
    batch: int,
    eager: int,
    description: str,
) -> GuardrailRule:
    flags = re.IGNORECASE if ignore_case else 0
    regex, messages = _compile(name, patterns, message, flags)
    default = ignore_case and list(patterns) == list(DEFAULT_PATTERNS)
    needles = _DEFAULT_NEEDLES if default else None
    for option, value in (("tail", tail), ("batch", batch), ("eager", eager)):
        if not _is_int(value, 0):
            raise ValueError(f"guardrail rule {name!r}: {option}={value!r}: expected an int >= 0")
    tail = max(tail, 1)
    return GuardrailRule(
        name,
        streaming=True,
        severity=severity,
        recoverable=recoverable,
        description=description,
        session=lambda rule: PatternSession(
            rule, regex, messages, tail, max(batch, 1), eager, needles
        ),
    )


def pattern_rule(
    patterns: Sequence[Any] | None = None,
    *,
    severity: Severity = "error",
    recoverable: bool = True,
    ignore_case: bool = True,
    tail: int = 96,
    batch: int = 256,
    eager: int = 512,
) -> GuardrailRule:
    """Meta statements and refusals ("As an AI language model", "I cannot help with that").

    Args:
        patterns: Regular expressions, or ``(regex, message)`` pairs; defaults to
            :data:`DEFAULT_PATTERNS`.
        severity: Severity of a match (``error``: the attempt is retried).
        recoverable: Whether a retry may fix it.
        ignore_case: Match case-insensitively.
        tail: Characters of earlier text rescanned with new text, the longest match that can
            straddle two checks.
        batch: After the first ``eager`` characters, scan once this many new characters came.
        eager: Characters at the start that are scanned at every check.
    """
    return _pattern_rule(
        "pattern",
        DEFAULT_PATTERNS if patterns is None else patterns,
        message="",
        severity=severity,
        recoverable=recoverable,
        ignore_case=ignore_case,
        tail=tail,
        batch=batch,
        eager=eager,
        description="meta statements and refusals",
    )


def custom_pattern_rule(
    patterns: Sequence[Any],
    *,
    message: str = "",
    severity: Severity = "error",
    recoverable: bool = True,
    name: str = "custom_pattern",
    ignore_case: bool = True,
    tail: int = 96,
    batch: int = 256,
    eager: int = 512,
) -> GuardrailRule:
    """Your own forbidden regular expressions; ``message`` describes a match."""
    return _pattern_rule(
        name,
        patterns,
        message=message,
        severity=severity,
        recoverable=recoverable,
        ignore_case=ignore_case,
        tail=tail,
        batch=batch,
        eager=eager,
        description="custom forbidden patterns",
    )


# --- zero output -----------------------------------------------------------------------------


class ZeroOutputSession:
    """Only looks at the end: empty or whitespace-only text with no tool call."""

    __slots__ = ("_rule",)

    def __init__(self, rule: GuardrailRule) -> None:
        self._rule = rule

    def feed(self, delta: str, state: State | None) -> None:
        """Nothing to do while streaming."""

    def finish(self, context: GuardrailContext) -> list[GuardrailViolation] | None:
        """Fail when nothing visible came and no tool was called."""
        if context.tool_calls:
            return None
        content = context.content
        if content and not content.isspace():
            return None
        what = "whitespace only" if content else "no output at all"
        return [self._rule.violation(f"the model produced {what}", position=0)]


def zero_output_rule(*, severity: Severity = "error", recoverable: bool = True) -> GuardrailRule:
    """Empty or whitespace-only output; a completion carrying only tool calls passes."""
    return GuardrailRule(
        "zero_output",
        streaming=False,
        severity=severity,
        recoverable=recoverable,
        description="empty or whitespace-only output",
        session=ZeroOutputSession,
    )


# --- stall -----------------------------------------------------------------------------------


class StallSession:
    """Tokens keep coming but none is visible (whitespace or empty chunks)."""

    __slots__ = ("_at_time", "_at_tokens", "_max_seconds", "_max_tokens", "_reported", "_rule")

    def __init__(self, rule: GuardrailRule, max_tokens: int, max_seconds: float | None) -> None:
        self._rule = rule
        self._max_tokens = max_tokens
        self._max_seconds = max_seconds
        self._at_tokens = -1
        self._at_time = 0.0
        self._reported = False

    def feed(self, delta: str, state: State | None) -> list[GuardrailViolation] | None:
        """Note when the idle stretch began; report once it is too long."""
        if delta and not delta.isspace():
            # The common case costs one isspace(): no clock read, no token count.
            self._at_tokens = -1
            return None
        if self._reported or state is None:
            return None
        tokens = state.token_count
        now = time.monotonic()
        if self._at_tokens < 0:
            # Idle since the previous check at the latest; counted from this check's first
            # token, so the count may run short by up to one check interval.
            self._at_tokens = tokens - 1
            self._at_time = now
        idle_tokens = tokens - self._at_tokens
        too_long = self._max_seconds is not None and now - self._at_time >= self._max_seconds
        if idle_tokens >= self._max_tokens or too_long:
            self._reported = True
            return [
                self._rule.violation(
                    f"no visible text for {idle_tokens} tokens "
                    f"({now - self._at_time:.1f}s): the stream is stalled"
                )
            ]
        return None

    def finish(self, context: GuardrailContext) -> None:
        """Nothing more to say at the end."""


def stall_rule(
    *,
    max_idle_tokens: int = 64,
    max_idle_seconds: float | None = 10.0,
    severity: Severity = "error",
    recoverable: bool = True,
) -> GuardrailRule:
    """A stream that keeps sending tokens without visible text (whitespace, empty chunks).

    A provider that sends nothing at all is caught by ``Timeout``; this rule catches the one
    that keeps the connection busy without making progress.

    Args:
        max_idle_tokens: Tokens in a row without visible text before it is a stall.
        max_idle_seconds: Seconds without visible text, while tokens arrive, before it is one.
        severity: Severity of a stall.
        recoverable: Whether a retry may fix it.
    """
    if not _is_int(max_idle_tokens, 1):
        raise ValueError(f"stall rule: max_idle_tokens={max_idle_tokens!r}: expected an int >= 1")
    seconds: object = max_idle_seconds
    if seconds is not None and (
        isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0
    ):
        raise ValueError(
            f"stall rule: max_idle_seconds={max_idle_seconds!r}: expected seconds > 0 or None"
        )
    return GuardrailRule(
        "stall",
        streaming=True,
        severity=severity,
        recoverable=recoverable,
        description="tokens arrive without visible text",
        session=lambda rule: StallSession(rule, max_idle_tokens, max_idle_seconds),
    )
