"""Text held back from guardrail sessions that batch their work (split from the engine)."""

from __future__ import annotations

from l0._guardrail_types import GuardrailRule, RuleSession, Violations, check_failed
from l0.types import State

_HOLD_LIMIT = 1 << 16
"""Most characters held back from a batching rule, however many it says it wants."""


class LazyFeeds:
    """Text held back from sessions that batch their work, fed to each once it wants it.

    A session with a ``wants`` attribute (characters it needs before a feed can change
    anything) gets the text added since its last feed, joined, once ``wants`` characters are
    pending; the deltas are kept once for all such sessions. Feeding a session exactly when it
    asks gives it the same text at the same check as feeding it every check would, so its
    findings do not change; only the calls in between are saved.
    """

    __slots__ = ("_dues", "_from", "_sessions", "deltas", "due")

    def __init__(self, sessions: list[tuple[int, GuardrailRule, RuleSession]]) -> None:
        self._sessions = tuple(sessions)
        self.deltas: list[str] = []
        self._from = [0] * len(sessions)
        self._dues = [self._wants(r, s, 0) for _, r, s in sessions]
        self.due = min(self._dues)

    @staticmethod
    def _wants(rule: GuardrailRule, session: RuleSession, chars: int) -> int:
        wants = session.wants  # type: ignore[attr-defined]
        if type(wants) is not int and (isinstance(wants, bool) or not isinstance(wants, int)):
            raise check_failed(
                rule, TypeError(f"its session's wants={wants!r}: expected an int (characters)")
            )
        return chars + (1 if wants < 1 else min(wants, _HOLD_LIMIT))

    def feed(
        self,
        chars: int,
        state: State | None,
        hits: list[tuple[int, GuardrailRule, Violations]] | None,
        *,
        final: bool = False,
    ) -> list[tuple[int, GuardrailRule, Violations]] | None:
        """Feed every session that is due (every one with pending text when ``final``)."""
        deltas = self.deltas
        count = len(deltas)
        starts = self._from
        dues = self._dues
        joined_from = -1
        text = ""
        for k, (index, rule, session) in enumerate(self._sessions):
            start = starts[k]
            if start == count or (chars < dues[k] and not final):
                continue
            if start != joined_from:
                # Sessions that batch alike (the JSON and pattern rules, 256 characters each)
                # are often due together, from the same delta: one join serves them.
                text = deltas[start] if start == count - 1 else "".join(deltas[start:])
                joined_from = start
            try:
                found = session.feed(text, state)
            except Exception as exc:
                raise check_failed(rule, exc) from exc
            starts[k] = count
            dues[k] = self._wants(rule, session, chars)
            if found:
                if hits is None:
                    hits = []
                hits.append((index, rule, found))
        self.due = min(dues)
        done = min(starts)
        if done:
            del deltas[:done]
            for k in range(len(starts)):
                starts[k] -= done
        return hits

    def flush(self, state: State | None) -> list[tuple[int, GuardrailRule, Violations]] | None:
        """Hand every session the text it has not seen (before the final checks)."""
        return self.feed(0, state, None, final=True)
