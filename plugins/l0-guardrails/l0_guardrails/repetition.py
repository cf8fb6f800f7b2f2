"""The repetition rule: a model stuck in a loop, cut within ``max_repeats`` repeats of its unit.

Re-exported by :mod:`l0_guardrails.text_rules`.
"""

from __future__ import annotations

import re
from typing import Final

from l0.guardrails import GuardrailContext, GuardrailRule
from l0.types import GuardrailViolation, Severity, State

__all__ = ["RepetitionSession", "loop_period", "repetition_rule"]


def _is_int(value: object, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


_LETTER: Final = re.compile(r"[^\W\d_]")


def loop_period(text: str, min_period: int, repeats: int, max_period: int) -> int | None:
    """The period of a loop at the end of ``text``, or ``None``.

    A loop is a unit of ``min_period`` to ``max_period`` characters, containing a letter, that
    ends ``text`` at least ``repeats`` times in a row. Candidates come from earlier occurrences
    of the last characters (``str.rfind``, nearest first), so the cost is one scan
    of at most ``max_period`` characters plus a comparison per candidate. A tail that repeats
    with a shorter period (a ruler of dashes, ``0, 0, 0``, ``ha ha ha``) is not a loop.
    """
    n = len(text)
    if n < min_period * repeats:
        return None
    # A tail of period p over repeats * p characters holds its last (repeats - 1) * p characters
    # twice, so a probe that long still recurs at distance p for every p >= min_period; the
    # longer the probe, the fewer false candidates in ordinary text.
    k = (repeats - 1) * min_period
    probe = text[n - k :]
    lowest = max(0, n - k - max_period)
    # Occurrences that end before the probe's own end, nearest (smallest period) first.
    pos = text.rfind(probe, lowest, n - 1)
    while pos >= 0:
        d = n - k - pos
        span = d * repeats
        if span > n:
            return None  # farther occurrences only need more text
        # Cheap rejections first: the character before the match, then two whole periods.
        if (
            (pos == 0 or text[pos - 1] == text[n - k - 1])
            and text.startswith(text[n - d :], n - 2 * d)
            and text.startswith(text[n - span + d :], n - span)
        ):
            if d < min_period or _LETTER.search(text, n - d) is None:
                return None
            return d
        pos = text.rfind(probe, lowest, pos + k - 1)
    return None


class RepetitionSession:
    """Looping detection: does the newest text end with the same unit ``max_repeats`` times?

    Every ``stride`` new characters the session probes the end of the text; once every
    ``4 * stride`` characters it looks back for periods up to ``window / max_repeats``, at the
    other probes for periods up to ``4 * stride``. A loop of period ``p`` is therefore found
    once ``max_repeats * p`` characters of it have arrived, plus at most one stride (or, for a
    period longer than ``4 * stride``, one period), whatever ``p`` is: a sentence of a few words
    or a paragraph.

    A probe is cheap unless a loop is plausible. Its signature is the last
    ``(max_repeats - 1) * min_period`` characters: a tail that repeats with any period
    ``p >= min_period`` holds them at distance ``p`` as well, so one C-level ``str.rfind`` over
    the look-back decides; only when the signature recurs does :func:`loop_period` run its
    candidates. Cost: O(stride) per ``stride`` characters plus O(window / max_repeats) per
    ``4 * stride``, linear in the output, with a handful of Python operations per probe.
    """

    __slots__ = (
        "_buffer",
        "_full_at",
        "_least",
        "_max_period",
        "_max_repeats",
        "_min_period",
        "_pending",
        "_pending_len",
        "_reported",
        "_rule",
        "_seen",
        "_short",
        "_signature",
        "_stride",
        "_trim",
        "_window",
    )

    def __init__(
        self, rule: GuardrailRule, min_period: int, max_repeats: int, window: int, stride: int
    ) -> None:
        self._rule = rule
        self._min_period = min_period
        self._max_repeats = max_repeats
        self._max_period = window // max_repeats
        # Most probes look back only ``_short`` characters; one in every ``_short`` characters
        # looks back the whole ``_max_period``. A loop longer than ``_short`` is then still
        # caught within one more period, at a fraction of the scanning.
        self._short = min(self._max_period, 4 * stride)
        self._full_at = 0
        self._window = window
        self._trim = 2 * window
        self._least = min_period * max_repeats
        self._signature = (max_repeats - 1) * min_period
        self._stride = stride
        self._buffer = ""
        self._pending: list[str] = []
        self._pending_len = 0
        self._seen = 0
        self._reported = False

    def feed(self, delta: str, state: State | None) -> list[GuardrailViolation] | None:
        """Queue ``delta``; probe every ``stride`` characters."""
        queued = self._pending_len
        size = queued + len(delta)
        if size < self._stride:
            self._pending.append(delta)
            self._pending_len = size
            return None
        if queued:
            pending = self._pending
            pending.append(delta)
            delta = "".join(pending)
            pending.clear()
            self._pending_len = 0
        # Nothing queued (the common case, deltas of a stride or more): no list round trip.
        # The probe is inline: it runs once per stride on every stream, so it is kept to a few
        # attribute reads and one C-level search; the rest runs only when the signature recurs.
        if self._reported:
            return None
        seen = self._seen = self._seen + size
        # Drop the attribute's reference first: with the local as the only one, CPython grows
        # the string in place, so appending costs O(new) rather than a copy of the window.
        buffer = self._buffer
        self._buffer = ""
        buffer += delta
        n = len(buffer)
        if n > self._trim:
            buffer = buffer[-self._window :]  # once per window of text: amortised O(1)
            n = self._window
        self._buffer = buffer
        if seen >= self._full_at:
            reach = self._max_period
            self._full_at = seen + self._short
        else:
            reach = self._short
        k = self._signature
        low = n - k - reach
        # The signature test of loop_period, inlined: nearly every probe ends here.
        if n < self._least or buffer.rfind(buffer[n - k :], low if low > 0 else 0, n - 1) < 0:
            return None
        return self._report(buffer, n, seen, reach)

    def _report(
        self, buffer: str, n: int, seen: int, reach: int
    ) -> list[GuardrailViolation] | None:
        period = loop_period(buffer, self._min_period, self._max_repeats, reach)
        if period is None:
            return None
        self._reported = True
        repeats = self._max_repeats
        while (repeats + 1) * period <= n and buffer.startswith(
            buffer[-period:], n - (repeats + 1) * period
        ):
            repeats += 1
        return [
            self._rule.violation(
                f"the output repeats itself: {buffer[-period:].strip()[:60]!r} "
                f"({period} characters) came {repeats} times in a row",
                position=seen - repeats * period,
            )
        ]

    def finish(self, context: GuardrailContext) -> list[GuardrailViolation] | None:
        """Look at the last queued text."""
        if self._pending and not self._reported:
            # A zero stride makes the feed of nothing probe the queued text at once (the
            # stream is over: no later feed can see the changed stride).
            self._stride = 0
            return self.feed("", None)
        return None


def repetition_rule(
    *,
    min_period: int = 8,
    max_repeats: int = 4,
    window: int = 2048,
    stride: int = 64,
    severity: Severity = "error",
    recoverable: bool = True,
) -> GuardrailRule:
    """A model stuck in a loop: the same text keeps coming back; cut it off early.

    Args:
        min_period: Shortest loop unit, in characters (a few words); shorter repeats (rulers,
            ``0, 0, 0``, ``ha ha ha``) are never a loop.
        max_repeats: Units in a row that make a loop.
        window: Characters of recent output searched; loops with a unit up to
            ``window / max_repeats`` characters are found.
        stride: Characters between looks; a loop is cut within ``max_repeats`` units plus this.
            64 by default: half the looks of 32 (half the rule's cost on dense JSON), for a
            loop cut at most 32 characters later.
        severity: Severity of a loop.
        recoverable: Whether a retry may fix it.
    """
    for option, value, low in (
        ("min_period", min_period, 4),
        ("max_repeats", max_repeats, 2),
        ("window", window, 64),
        ("stride", stride, 1),
    ):
        if not _is_int(value, low):
            raise ValueError(f"repetition rule: {option}={value!r}: expected an int >= {low}")
    if min_period * max_repeats > window:
        raise ValueError(
            f"repetition rule: min_period * max_repeats = {min_period * max_repeats} exceeds "
            f"window={window}; no loop could ever be found"
        )
    return GuardrailRule(
        "repetition",
        streaming=True,
        severity=severity,
        recoverable=recoverable,
        description="looping output (the same text over and over)",
        session=lambda rule: RepetitionSession(rule, min_period, max_repeats, window, stride),
    )
