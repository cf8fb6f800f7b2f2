"""Continuation from the last good token: resume points and overlap removal at the seam."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from l0._json_seam import json_overlap, looks_like_json
from l0._session_base import _END, _OBS, SessionBase, _now
from l0.types import (
    ErrorCategory,
    Event,
    EventType,
)

_RESTART_MIN = 32
"""Characters an attempt must repeat of the beginning of the kept text before a difference
counts as a new answer (withdraw and start over) rather than a continuation."""


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _overlap(checkpoint: str, text: str, limit: int) -> int:
    """Length of the longest checkpoint suffix that ``text`` starts with, on word boundaries.

    At least two characters, not only whitespace, and the cut must not split a word on either
    side ("the" + "he said" is not an overlap).
    """
    upper = min(len(checkpoint), len(text), limit)
    for k in range(upper, 1, -1):
        if not checkpoint.endswith(text[:k]):
            continue
        starts_clean = k == len(checkpoint) or not (
            checkpoint[-k - 1].isalnum() and text[0].isalnum()
        )
        ends_clean = k == len(text) or not (text[k - 1].isalnum() and text[k].isalnum())
        if starts_clean and ends_clean and text[:k].strip():
            return k
    return 0


class ContinuationMixin(SessionBase):
    """Choosing the text a retry continues from and trimming what the model repeats."""

    __slots__ = ()

    # --- continuation ----------------------------------------------------------------------------

    def _resume_point(
        self, error: BaseException, category: ErrorCategory
    ) -> tuple[str, int] | None:
        """The validated text the next attempt continues from, or None to start over."""
        opts = self._opts
        if not opts.continuation or category in (ErrorCategory.FATAL, ErrorCategory.INTERNAL):
            return None
        state = self.state
        candidates: list[tuple[str, int]] = []
        if category is not ErrorCategory.CONTENT:
            # The tokens were received intact; only the transport failed, so keep them all.
            candidates.append((state.content, state.token_count))
        candidates.append((state.checkpoint, state._prefix_tokens + state._checkpoint_at))
        for text, tokens in candidates:
            if not text.strip():
                continue
            if self._checkpoint_is_valid(text):
                return text, tokens
        return None

    def _checkpoint_is_valid(self, text: str) -> bool:
        opts = self._opts
        if opts.guardrails is not None:
            for violation in opts.guardrails.validate(text):
                if violation.severity != "warning" or not violation.recoverable:
                    return False
        if opts.drift is not None:
            result = opts.drift.validate(text)
            if result is not None and result.detected:
                return False
        return True

    def _begin_resume(self, checkpoint: str, tokens: int) -> str | None:
        state = self.state
        state.resumed = True
        state.resume_point = checkpoint
        state.resume_from = len(checkpoint)
        if self._observed:
            import hashlib

            digest = hashlib.sha256(checkpoint.encode()).hexdigest()[:16]
            self._obs(
                _OBS.RESUME_START, checkpoint=checkpoint, state_hash=digest, token_count=tokens
            )
        self._notify("on_resume", checkpoint, tokens)
        builder = self._opts.build_continuation_prompt
        if builder is None:
            return None
        prompt = builder(checkpoint)
        if not isinstance(prompt, str):
            raise TypeError(
                f"build_continuation_prompt returned {type(prompt).__name__}; expected str"
            )
        return prompt

    def _continues_on_length(self) -> bool:
        """True when this attempt stopped at the token limit and may be continued."""
        state = self.state
        return (
            state.finish_reason == "length"
            and state.length_continuations < self._opts.continue_on_length
            and not state.tool_calls
        )

    def _length_resume(self, resumed: bool, checkpoint: str) -> tuple[str, int]:
        """Close this attempt as a part of the answer and return what the next one continues."""
        state = self.state
        self._account("continued")
        if resumed:
            self._obs(
                _OBS.RESUME_END,
                checkpoint=checkpoint,
                duration_ms=int((_now() - self._attempt_start) * 1000),
                success=True,
                overlap_chars=self._overlap_removed,
            )
        state.length_continuations += 1
        state.finish_reason = None
        self._obs(
            _OBS.LENGTH_CONTINUATION,
            continuation=state.length_continuations,
            max_continuations=self._opts.continue_on_length,
            token_count=state.token_count,
        )
        return state.content, state.token_count

    def _report_continuation(self, strategy: str, rejected: tuple[str, ...]) -> None:
        """A factory's report of the continuation strategy it used (``AttemptContext``)."""
        self._obs(_OBS.CONTINUATION_STRATEGY, strategy=strategy, rejected=list(rejected))

    async def _trim_overlap(self, iterator: AsyncIterator[Any], first: Any) -> list[Any]:
        """Hold the first tokens of a continuation until the repeated text can be cut.

        Two repeats are recognised while the tokens stream, each with O(len(token)) work:

        * the model repeats the last words of the checkpoint (asked to continue, it often
          does): tokens are held while everything received still occurs in the checkpoint's
          last ``max_overlap`` characters, then the longest checkpoint suffix the new text
          starts with, aligned to word boundaries, is cut;
        * the attempt starts the answer over (a restart strategy, or a model that ignores the
          continuation): tokens are held while they repeat the beginning of the checkpoint,
          however long it is, and dropped once the repeat reaches its end. When a long repeat
          (``_RESTART_MIN`` characters or more) then differs from the checkpoint, the new
          attempt is a different answer: everything kept is withdrawn with an in-band
          ``RESET`` and the new attempt's text is delivered whole.
        """
        checkpoint = self.state._prefix
        limit = self._opts.max_overlap
        tail = checkpoint[-limit:]
        held: list[str] = []
        text = ""  # only while the suffix hypothesis is open (at most ``limit`` characters)
        suffix_open = True
        matched = 0  # characters that repeat the beginning of the checkpoint
        restart_open = True
        item = first
        while True:
            if type(item) is not str:
                return [*self._settle(held, text, checkpoint, matched, restart_open), item]
            held.append(item)
            if restart_open:
                if checkpoint.startswith(item, matched):
                    matched += len(item)
                else:
                    rest = checkpoint[matched:]
                    if len(item) > len(rest) and item.startswith(rest):
                        # The repeat ends inside this token: keep only what follows it.
                        self._overlap_removed = len(checkpoint)
                        return [item[len(rest) :]]
                    restart_open = False
                    if matched + _common_prefix(rest, item) >= _RESTART_MIN:
                        return self._start_over(held)
            if restart_open and matched == len(checkpoint):
                self._overlap_removed = matched
                item = await anext(iterator, _END)
                self._last = _now()
                return [item]
            if suffix_open:
                text += item
                suffix_open = len(text) < limit and text in tail
            if not suffix_open and not restart_open:
                return self._cut(held, text, checkpoint)
            item = await anext(iterator, _END)
            self._last = _now()
            if item is _END:
                return [*self._settle(held, text, checkpoint, matched, restart_open), _END]

    def _settle(
        self, held: list[str], text: str, checkpoint: str, matched: int, restart_open: bool
    ) -> list[Any]:
        """What to deliver of the held tokens when the attempt ends or sends a non-text item."""
        if restart_open and held and matched >= min(_RESTART_MIN, len(checkpoint)):
            # Everything this attempt said repeats the beginning of what is already kept.
            self._overlap_removed = matched
            return []
        return self._cut(held, text, checkpoint)

    def _start_over(self, held: list[str]) -> list[Any]:
        """The attempt is a new answer: withdraw the kept text in-band and deliver it all."""
        state = self.state
        kept, tokens = state._prefix, state._prefix_tokens
        # The kept text moves into this attempt's parts so that the RESET below, applied by
        # the same code as a nested stream's RESET, takes it back out.
        state._prefix = ""
        state._prefix_tokens = 0
        state._parts.append(kept)
        state.resumed = False
        state.resume_point = None
        state.resume_from = None
        self._overlap_removed = 0
        reset = Event(
            EventType.RESET,
            data={"withdrawn": kept, "withdrawn_tokens": tokens, "kept": 0, "reason": "restart"},
        )
        return [reset, *held]

    def _cut(self, held: list[str], text: str, checkpoint: str) -> list[Any]:
        k = _overlap(checkpoint, text, self._opts.max_overlap)
        if looks_like_json(checkpoint):
            # Inside JSON a repeat may end mid-word or be a lone quote: keep it parseable.
            cut = json_overlap(checkpoint, "".join(held))
            if cut is not None:
                k = cut
        self._overlap_removed = k
        if not k:
            return list(held)
        out: list[Any] = []
        drop = k
        for token in held:
            if drop >= len(token):
                drop -= len(token)
                continue
            out.append(token[drop:])
            drop = 0
        return out
