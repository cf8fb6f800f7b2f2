"""Continuation from the last good token: resume points and overlap removal at the seam."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from l0._session_base import _END, _OBS, SessionBase, _now
from l0.types import (
    ErrorCategory,
)


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

    async def _trim_overlap(self, iterator: AsyncIterator[Any], first: Any) -> list[Any]:
        """Hold the first tokens of a continuation until the repeated seam can be cut.

        Models asked to continue often repeat the last words of the checkpoint. Tokens are
        held while everything received so far still occurs in the checkpoint's tail (so the
        repetition may go on), at most ``max_overlap`` characters; then the longest
        checkpoint suffix that the new text starts with, aligned to word boundaries, is cut.
        """
        checkpoint = self.state._prefix
        limit = self._opts.max_overlap
        tail = checkpoint[-limit:]
        held: list[str] = []
        text = ""
        item = first
        while True:
            if type(item) is not str:
                return [*self._cut(held, text, checkpoint), item]
            held.append(item)
            text += item
            if len(text) >= limit or text not in tail:
                return self._cut(held, text, checkpoint)
            item = await anext(iterator, _END)
            self._last = _now()
            if item is _END:
                return [*self._cut(held, text, checkpoint), _END]

    def _cut(self, held: list[str], text: str, checkpoint: str) -> list[Any]:
        k = _overlap(checkpoint, text, self._opts.max_overlap)
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
