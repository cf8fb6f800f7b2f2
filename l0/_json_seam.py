"""Stitching JSON at a continuation seam: which repeated characters to cut so the text parses.

A model asked to continue a JSON document it was cut off in often repeats a few characters (a
quote, half a word). Prose rules (word boundaries) cannot tell which cut is right inside JSON,
so :func:`json_overlap` checks each candidate with a JSON *prefix* validator: the cut that
leaves a text that can still become valid JSON wins. The validator keeps its state, so the
checkpoint is scanned once per seam and only the held characters are scanned per candidate.
"""

from __future__ import annotations

_WS = " \t\r\n"
_NUMBER = "0123456789+-.eE"
_LITERALS = {"t": "rue", "f": "alse", "n": "ull"}


class JSONPrefix:
    """A validator of JSON prefixes: ``feed`` returns False once the text cannot be JSON."""

    __slots__ = ("empty", "ok", "pending", "stack", "state")

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.state = "value"  # value key colon after string key_string escape number literal
        self.empty = False  # just after "[" or "{": a closer is allowed
        self.pending = ""  # the rest of a literal, or the string state to return to
        self.ok = True

    def copy(self) -> JSONPrefix:
        """An independent copy of the scan state."""
        clone = JSONPrefix()
        clone.stack = list(self.stack)
        clone.state, clone.empty, clone.pending, clone.ok = (
            self.state,
            self.empty,
            self.pending,
            self.ok,
        )
        return clone

    def feed(self, text: str) -> bool:
        """Scan more text; False when the prefix can no longer be valid JSON."""
        for char in text:
            if not self.ok:
                return False
            self.ok = self._step(char)
        return self.ok

    def _close(self, char: str) -> bool:
        if not self.stack or {"}": "{", "]": "["}[char] != self.stack[-1]:
            return False
        self.stack.pop()
        self.state, self.empty = "after", False
        return True

    def _step(self, char: str) -> bool:
        state = self.state
        if state in ("string", "key_string"):
            if char == "\\":
                self.pending, self.state = state, "escape"
            elif char == '"':
                self.state = "colon" if state == "key_string" else "after"
            return char >= " " or char == "\t"
        if state == "escape":
            self.state = self.pending
            return char in '"\\/bfnrtu'
        if state == "literal":
            if not self.pending or char != self.pending[0]:
                return False
            self.pending = self.pending[1:]
            if not self.pending:
                self.state = "after"
            return True
        if state == "number":
            if char in _NUMBER:
                return True
            self.state = "after"
            return self._step(char)
        if char in _WS:
            return True
        if state == "value":
            if char in "]}" and self.empty:
                return self._close(char)
            self.empty = False
            if char == '"':
                self.state = "string"
            elif char in "{[":
                self.stack.append(char)
                self.state, self.empty = ("key" if char == "{" else "value"), True
            elif char in "-0123456789":
                self.state = "number"
            elif char in _LITERALS:
                self.state, self.pending = "literal", _LITERALS[char]
            else:
                return False
            return True
        if state == "key":
            if char == "}" and self.empty:
                return self._close(char)
            self.empty = False
            if char != '"':
                return False
            self.state = "key_string"
            return True
        if state == "colon":
            if char != ":":
                return False
            self.state = "value"
            return True
        # after a value
        if char in "]}":
            return self._close(char)
        if char == "," and self.stack:
            self.state = "key" if self.stack[-1] == "{" else "value"
            return True
        return False


def looks_like_json(text: str) -> bool:
    """True when ``text`` starts (after whitespace) like a JSON object or array."""
    stripped = text.lstrip()
    return stripped[:1] in ("{", "[")


def json_overlap(checkpoint: str, text: str) -> int | None:
    """Characters to cut from the start of ``text`` so ``checkpoint + text[k:]`` stays JSON.

    Prefers the longest repeat of two or more characters, then no cut, then a one-character
    repeat (a doubled quote). ``None`` when the checkpoint is not a JSON prefix or no cut
    works (the caller falls back to the prose rules).
    """
    base = JSONPrefix()
    if not base.feed(checkpoint):
        return None
    repeats = [
        k for k in range(min(len(checkpoint), len(text)), 0, -1) if checkpoint.endswith(text[:k])
    ]
    for k in [*(k for k in repeats if k >= 2), 0, *(k for k in repeats if k == 1)]:
        if base.copy().feed(text[k:]):
            return k
    return None
