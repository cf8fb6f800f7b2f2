"""JSON rules: balanced structure while streaming, complete and parseable at the end.

The structure scan is incremental. A compiled regex jumps from one bracket or string to the
next, and a whole string (escapes included) is one match, so each check costs O(len(delta))
and plain text between structural characters is skipped in C.

Which outputs count as JSON: the first non-blank character, after an optional Markdown fence
line (```` ```json ````), must be ``{`` or ``[``. Anything else (prose, a bare number) is not
JSON output and the ``json`` rule passes it; ``strict_json`` with ``require_json=True`` rejects
it. After the top-level value closes, text may follow (a closing fence, a second JSON value);
a closing bracket with nothing open is a violation.
"""

from __future__ import annotations

import importlib
import re
from operator import length_hint
from typing import Any, Final

import orjson

from l0.guardrails import GuardrailContext, GuardrailRule
from l0.types import GuardrailViolation, Severity, State

__all__ = ["JsonSession", "StrictJsonSession", "json_rule", "strict_json_rule"]

# A complete string, or a bracket, or a lone quote that opens a string this delta does not end.
_TOKEN: Final = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|([{}\[\]"])', re.DOTALL)
# The shape of a delta in one findall: each match skips plain text and complete strings with
# possessive repeats (a tight C loop per character, where ``_TOKEN``'s search retries its
# alternation at every position) and captures the next bracket or lone quote, or "" at the
# end. The captures, in order, are exactly the groups of ``_TOKEN`` (plus that last "").
_SHAPE: Final = re.compile(
    r'[^"{}\[\]]*+(?:"[^"\\]*+(?:\\.[^"\\]*+)*+"[^"{}\[\]]*+)*+([{}\[\]"]|\Z)', re.DOTALL
)
_shape: Final = _SHAPE.findall
_FENCE_LIMIT: Final = 200
DEFAULT_BATCH: Final = 256
"""Characters the structure scan takes at once by default: a few scans per kilobyte of JSON
instead of one per check, each violation still at its exact position."""
_NEVER: Final = 1 << 30
"""``wants`` of a session with nothing left to check (prose, or JSON already broken)."""

# _FAILED: JSON output whose structure broke; nothing more is checked or reported.
_UNDECIDED, _ACTIVE, _INACTIVE, _FAILED = 0, 1, 2, 3


def _trailing_escape(text: str) -> bool:
    """True when ``text`` (inside a string) ends with an unpaired backslash."""
    return (len(text) - len(text.rstrip("\\"))) % 2 == 1


def _locate(delta: str, pos: int, index: int, offset: int) -> int:
    """Absolute position of the ``index``-th bracket or lone quote of ``delta`` (after a violation).

    Complete strings are not counted: ``index`` indexes the shape ``JsonSession.feed`` walks.
    """
    k = 0
    for match in _TOKEN.finditer(delta, pos):
        if match.group(1) is not None:
            if k == index:
                return offset + match.start()
            k += 1
    return offset  # pragma: no cover - the token exists by construction


class JsonSession:
    """Incremental structure check of one attempt."""

    __slots__ = (
        "_batch",
        "_closes",
        "_escape",
        "_fenced",
        "_head",
        "_held",
        "_held_len",
        "_in_string",
        "_mode",
        "_offset",
        "_rule",
        "_stack",
    )

    def __init__(self, rule: GuardrailRule, batch: int = 1) -> None:
        self._rule = rule
        self._batch = batch
        self._held_len = 0
        self._closes = False
        self._mode = _UNDECIDED
        self._head = ""
        self._fenced = False
        self._stack: list[str] = []
        self._held: list[str] = []
        self._in_string = False
        self._escape = False
        self._offset = 0

    @property
    def is_json(self) -> bool:
        """True once the output was recognised as JSON."""
        return self._mode in (_ACTIVE, _FAILED)

    def _decide(self, delta: str) -> str | None:
        """Before the first significant character: return the part of the text to scan."""
        head = self._head + delta
        base = self._offset - len(self._head)
        while True:
            stripped = head.lstrip()
            if not stripped:
                self._head = head
                self._offset += len(delta)
                return None
            first = stripped[0]
            if first in "{[":
                self._mode = _ACTIVE
                self._head = ""
                self._offset = base + len(head) - len(stripped)
                return stripped
            if first == "`" and not self._fenced:
                if len(stripped) < 3 and stripped == "`" * len(stripped):
                    self._head = head
                    self._offset += len(delta)
                    return None
                if stripped.startswith("```"):
                    newline = stripped.find("\n")
                    if newline < 0:
                        if len(stripped) > _FENCE_LIMIT:
                            break
                        self._head = head
                        self._offset += len(delta)
                        return None
                    self._fenced = True
                    skipped = len(head) - len(stripped) + newline + 1
                    base += skipped
                    head = head[skipped:]
                    continue
            break
        self._mode = _INACTIVE
        self._head = ""
        return None

    def feed(self, delta: str, state: State | None) -> list[GuardrailViolation] | None:
        """Scan ``delta``; report the first mis-nested or unmatched bracket."""
        if self._mode != _ACTIVE:
            if self._mode != _UNDECIDED:
                return None
            scan = self._decide(delta)
            if scan is None:
                return None
            delta = scan
        # Only a closing bracket can be a violation: text waits until ``batch`` characters
        # are pending and one of them is a closing bracket (or until the end). The scan of the
        # joined text reports a violation at the same position as a scan per delta would; an
        # empty delta waits too, as it changes nothing, not even an escape still pending.
        held = self._held
        if "}" in delta or "]" in delta:
            if not held and self._batch == 1:
                return self._scan(delta)
            self._closes = True
        held.append(delta)
        pending = self._held_len = self._held_len + len(delta)
        if not self._closes or (pending < self._batch and self._offset >= self._batch):
            # (The first batch is scanned at every check: a one-off check of a short text,
            # such as a checkpoint's, must find what it holds.)
            return None
        delta = held[0] if len(held) == 1 else "".join(held)
        held.clear()
        self._held_len = 0
        self._closes = False
        return self._scan(delta)

    def _flush(self) -> list[GuardrailViolation] | None:
        if not self._held:
            return None
        delta = "".join(self._held)
        self._held.clear()
        self._held_len = 0
        self._closes = False
        return self._scan(delta)

    def _scan(self, delta: str) -> list[GuardrailViolation] | None:
        offset = self._offset
        self._offset = offset + len(delta)
        if self._in_string:
            # A quote in front (and the pending backslash) makes the open string one that
            # ``_SHAPE`` skips whole if this delta closes it, or a lone quote if not.
            if self._escape:
                delta = '"\\' + delta
                offset -= 2
            else:
                delta = '"' + delta
                offset -= 1
            self._in_string = False
        stack = self._stack
        # Python code sees only the brackets (a few per delta) and the final "". No index is
        # counted per bracket: a violation (at most one per attempt) derives it from what is left.
        shape = _shape(delta)
        brackets = iter(shape)
        for char in brackets:
            if char == "{":
                stack.append("}")
            elif char == "[":
                stack.append("]")
            elif stack and stack[-1] == char:
                stack.pop()
            elif not char:
                break
            elif char == '"':
                # Nothing after an unclosed quote can end the string within this delta, so the
                # trailing backslashes of the delta are the string's own. A string after the
                # top-level value is followed too: brackets inside it are not structure,
                # wherever the text was cut.
                self._in_string = True
                self._escape = delta.endswith("\\") and _trailing_escape(delta)
                return None
            else:
                self._mode = _FAILED
                where = _locate(delta, 0, len(shape) - length_hint(brackets) - 1, offset)
                if not stack:
                    return [self._rule.violation(f"unmatched {char!r}", position=where)]
                return [
                    self._rule.violation(
                        f"mis-nested JSON: expected {stack[-1]!r}, found {char!r}", position=where
                    )
                ]
        return None

    def finish(self, context: GuardrailContext) -> list[GuardrailViolation] | None:
        """Unclosed strings or brackets at the end are a violation."""
        if self._mode != _ACTIVE:
            return None
        late = self._flush()
        if late:
            return late
        if self._in_string and self._stack:
            # (An open quote after the top-level value is prose that follows the JSON.)
            return [self._rule.violation("JSON ends inside a string", position=self._offset)]
        if self._stack:
            missing = "".join(reversed(self._stack))
            return [
                self._rule.violation(
                    f"JSON is incomplete: {len(self._stack)} bracket(s) never closed "
                    f"(missing {missing!r})",
                    position=self._offset,
                )
            ]
        return None


def _strip_fence(text: str) -> str:
    text = text.strip()
    if text.startswith("```"):
        newline = text.find("\n")
        text = text[newline + 1 :] if newline >= 0 else ""
        if text.rstrip().endswith("```"):
            text = text.rstrip()[:-3]
    return text


class StrictJsonSession(JsonSession):
    """The streaming structure check, then a full parse at the end."""

    __slots__ = ("_require",)

    def __init__(self, rule: GuardrailRule, require_json: bool, batch: int = 1) -> None:
        super().__init__(rule, batch)
        self._require = require_json

    def finish(self, context: GuardrailContext) -> list[GuardrailViolation] | None:
        """Structure first; then the whole output (fence stripped) must parse."""
        if self._mode == _FAILED:
            return None
        if self._mode != _ACTIVE:
            if not self._require:
                return None
            text = context.content.strip()
            if text:
                try:
                    orjson.loads(_strip_fence(text))
                except orjson.JSONDecodeError:
                    pass
                else:
                    return None  # a bare scalar such as 42 or "yes" is valid JSON
            return [self._rule.violation("the output is not JSON", position=0)]
        broken = super().finish(context)
        if broken:
            return broken
        error = _json_error(_strip_fence(context.content))
        if error is not None:
            return [self._rule.violation(f"the output is not valid JSON: {error}")]
        return None


def _load_simdjson() -> Any:
    try:
        return importlib.import_module("simdjson")
    except ImportError:
        return None


_simdjson: Any = _load_simdjson()
"""The optional validator (``pip install "l0-guardrails[simdjson]"``), or ``None``."""


def _json_error(text: str) -> str | None:
    """Why ``text`` is not one JSON document (orjson's message), or ``None`` when it is.

    orjson is the reference. With ``pysimdjson`` installed, a document it accepts is taken as
    valid without building any Python object (about a tenth of orjson's time on a megabyte of
    JSON): everything it accepts, orjson accepts too (``tests/test_check_equivalence.py``
    compares them). Anything it rejects is parsed again by orjson, which has the last word.
    """
    simdjson = _simdjson
    # (It skips a leading byte order mark, which orjson rejects: such a text goes to orjson.)
    if simdjson is not None and not text.startswith("\ufeff"):
        try:
            simdjson.Parser().parse(text.encode())
        except Exception:  # rejected, or not encodable: orjson decides below
            pass
        else:
            return None
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return str(exc)
    return None


def _wants(self: JsonSession) -> int:
    """Characters before a feed can report anything (the engine may hold them back)."""
    mode = self._mode
    if mode == _ACTIVE:
        left = self._batch - self._held_len
        return left if left > 0 and self._offset >= self._batch else 1
    return 1 if mode == _UNDECIDED else _NEVER


# Only batching sessions say what they want: the engine calls one that reads every check
# straight, where holding text back for it would cost more than it saves.
class BatchedJsonSession(JsonSession):
    """:class:`JsonSession` that scans ``batch`` characters at a time."""

    __slots__ = ()
    wants = property(_wants)


class BatchedStrictJsonSession(StrictJsonSession):
    """:class:`StrictJsonSession` that scans ``batch`` characters at a time."""

    __slots__ = ()
    wants = property(_wants)


def _batch(rule: str, batch: object) -> int:
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"{rule} rule: batch={batch!r}: expected an int >= 1 (characters)")
    return batch


def json_rule(
    *, batch: int = DEFAULT_BATCH, severity: Severity = "error", recoverable: bool = True
) -> GuardrailRule:
    """Balanced JSON structure, checked as tokens arrive (see the module docstring).

    Args:
        batch: Characters scanned together: a violation is reported once this many have
            arrived since the previous scan (and one of them closes a bracket), or at the end;
            its position is exact either way. ``1`` scans at every check.
        severity: Severity of its violations.
        recoverable: Whether a retry may fix them.
    """
    size = _batch("json", batch)
    return GuardrailRule(
        "json",
        streaming=True,
        severity=severity,
        recoverable=recoverable,
        description="balanced JSON brackets and strings, checked incrementally",
        session=(lambda rule: BatchedJsonSession(rule, size)) if size > 1 else JsonSession,
    )


def strict_json_rule(
    *,
    require_json: bool = True,
    batch: int = DEFAULT_BATCH,
    severity: Severity = "error",
    recoverable: bool = True,
) -> GuardrailRule:
    """Complete, parseable JSON at the end, plus the streaming structure checks.

    Args:
        require_json: Reject output that is not JSON at all; with ``False`` only output that
            starts like JSON must parse (the ``strict`` preset, which also serves prose).
        batch: Characters the streaming structure check scans together (see :func:`json_rule`).
        severity: Severity of its violations.
        recoverable: Whether a retry may fix them.
    """
    size = _batch("strict_json", batch)
    return GuardrailRule(
        "strict_json",
        streaming=True,
        severity=severity,
        recoverable=recoverable,
        description="the whole output is one valid JSON document",
        session=lambda rule: (
            BatchedStrictJsonSession(rule, require_json, size)
            if size > 1
            else StrictJsonSession(rule, require_json)
        ),
    )
