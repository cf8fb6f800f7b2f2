"""Finding and fixing the JSON value in a model's answer (used by :mod:`l0.structured_output`).

Split from :mod:`l0.structured_output`, which re-exports the public names.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson
import pydantic_core

# How many `{` / `[` positions are tried when prose surrounds the JSON: prose may contain
# brackets ("[see below]"), but a model rarely writes more than a few before the answer.
_MAX_OPENERS: Final = 16

# A fenced block: the info string (```json) is optional, the closing fence may be missing when
# the answer was cut off.
_FENCE = re.compile(r"```[^\n`]*\n(.*?)(?:\n[ \t]*```|\Z)", re.DOTALL)
# Strings (possibly unterminated at the end of the text) and structural characters; everything
# else is skipped by the scanner, which is what makes it fast.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*(?:(")|\\?\Z)|[\[\]{},]', re.DOTALL)
_CLOSER: Final = {"{": "}", "[": "]"}
# A number at the very end of a cut value may itself be cut ("15" of "1500"): nothing after it
# says it ended. A letter before it means it is part of a literal or a key, not a number.
_TRAILING_NUMBER = re.compile(r"(?<![\w.+-])-?(?:\d[\d.eE+-]*)?\Z")


class JSONParseError(ValueError):
    """No JSON value could be read from a text, even after auto-correction."""


@dataclass(frozen=True, slots=True)
class ParsedJSON:
    """A JSON value found in a model's answer.

    Attributes:
        value: The parsed value (dicts, lists, str, int, float, bool, None).
        json: Strict JSON text of the value, as it was validated.
        corrections: What auto-correction changed; empty when the JSON was already valid.
    """

    value: Any
    json: str
    corrections: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Scan:
    end: int | None  # index just past the top-level value, None when it never closes
    open: str  # the brackets still open at the end of the text, outermost first
    in_string: bool  # the text ends inside a string
    trailing_commas: tuple[int, ...]  # positions of commas directly before a closer


def _scan(text: str) -> _Scan:
    """Structure of the JSON value that starts at ``text[0]`` (``{`` or ``[``)."""
    stack: list[str] = []
    commas: list[int] = []
    last_comma = -1
    for match in _TOKEN.finditer(text):
        start = match.start()
        char = text[start]
        if char == '"':
            if match.group(1) is None:
                return _Scan(None, "".join(stack), True, tuple(commas))
            last_comma = -1
            continue
        if char == ",":
            last_comma = start
            continue
        if char in "{[":
            stack.append(char)
        elif stack:
            if last_comma >= 0 and not text[last_comma + 1 : start].strip():
                commas.append(last_comma)
            stack.pop()
            if not stack:
                return _Scan(match.end(), "", False, tuple(commas))
        last_comma = -1
    return _Scan(None, "".join(stack), False, tuple(commas))


def extract_json(text: str) -> str:
    """The JSON value in a model's answer, without fences or surrounding prose.

    Looks at, in order: the whole (stripped) text; the first markdown code fence whose body
    starts with ``{`` or ``[``; then the first ``{`` or ``[`` from which a value parses. Text
    after the value's closing bracket is dropped. A value that never closes (a cut answer) is
    returned to the end, for :func:`parse_json` to complete. Without any bracket the stripped
    text is returned unchanged.
    """
    stripped = text.strip()
    for match in _FENCE.finditer(stripped):
        body = match.group(1).strip()
        if body[:1] in ("{", "["):
            return _cut(body)
    if stripped[:1] in ("{", "["):
        return _cut(stripped)
    first: str | None = None
    for count, match in enumerate(re.finditer(r"[\[{]", stripped)):
        if count == _MAX_OPENERS:
            break
        candidate = _cut(stripped[match.start() :])
        if first is None:
            first = candidate
        if _loads(candidate) is not None:
            return candidate
    return first if first is not None else stripped


def _cut(text: str) -> str:
    end = _scan(text).end
    return text if end is None else text[:end]


def _loads(text: str) -> tuple[Any] | None:
    """``(value,)`` for strict JSON text, else ``None``."""
    try:
        return (pydantic_core.from_json(text),)
    except ValueError:
        return None


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _load_json_repair() -> Callable[..., Any] | None:
    """``json_repair.repair_json`` when the optional extra is installed, else ``None``."""
    try:
        from json_repair import repair_json
    except ImportError:
        return None
    repair: Callable[..., Any] = repair_json
    return repair


def _dumps(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        # orjson refuses integers beyond 64 bits; the stdlib writes any int.
        import json

        return json.dumps(value)


def _correct(text: str) -> ParsedJSON | None:
    """Our own corrections: trailing commas, then the completion of a truncated value."""
    if text[:1] not in ("{", "["):
        return None
    scan = _scan(text)
    corrections: list[str] = []
    fixed = text
    if scan.trailing_commas:
        for position in reversed(scan.trailing_commas):
            fixed = fixed[:position] + fixed[position + 1 :]
        corrections.append(f"removed {_plural(len(scan.trailing_commas), 'trailing comma')}")
        scan = _scan(fixed)
    if scan.end is None and not scan.in_string:
        number = _TRAILING_NUMBER.search(fixed)
        if number is not None and number.start() < len(fixed):
            fixed = fixed[: number.start()]
            corrections.append("dropped the unfinished number at the end")
            scan = _scan(fixed)
    if scan.end is None:
        closers = "".join(_CLOSER[c] for c in reversed(scan.open))
        closed = None if scan.in_string else _loads(fixed + closers)
        if closed is not None:
            corrections.append(f"closed {_plural(len(closers), 'unclosed bracket')} at the end")
            return ParsedJSON(closed[0], _dumps(closed[0]), tuple(corrections))
        try:
            value = pydantic_core.from_json(fixed, allow_partial=True)
        except ValueError:
            return None
        corrections.append(
            f"closed {_plural(len(closers), 'unclosed bracket')} at the end and dropped the "
            "unfinished item there"
        )
        return ParsedJSON(value, _dumps(value), tuple(corrections))
    loaded = _loads(fixed)
    if loaded is None or not corrections:
        return None
    return ParsedJSON(loaded[0], fixed, tuple(corrections))


def parse_json(text: str, *, auto_correct: bool = True) -> ParsedJSON:
    """Read the JSON value in a model's answer (see :func:`extract_json`).

    Args:
        text: The answer: bare JSON, fenced JSON or JSON with prose around it.
        auto_correct: Fix trailing commas and complete a truncated value (see the module
            docstring); with ``json-repair`` installed, also whatever it repairs.

    Returns:
        The value, its strict JSON text and the corrections made.

    Raises:
        JSONParseError: there is no readable JSON value in ``text``.
    """
    candidate = extract_json(text)
    if not candidate:
        raise JSONParseError("the answer is empty")
    try:
        return ParsedJSON(pydantic_core.from_json(candidate), candidate)
    except ValueError as exc:
        reason = str(exc)
    if not auto_correct:
        raise JSONParseError(f"invalid JSON: {reason}")
    corrected = _correct(candidate)
    if corrected is not None:
        return corrected
    repair = _load_json_repair()
    if repair is None:
        raise JSONParseError(
            f"invalid JSON: {reason} (not fixable by auto-correction; `pip install "
            "'l0[structured]'` adds json-repair for more repairs)"
        )
    try:
        value = repair(candidate, return_objects=True, skip_json_loads=True)
    except Exception as exc:  # a third-party repairer may fail in any way; report, not crash
        raise JSONParseError(f"invalid JSON: {reason} (json-repair failed: {exc!r})") from exc
    # json-repair answers "" for text with nothing JSON-like in it.
    if value == "" and candidate.strip() not in ('""', "''"):
        raise JSONParseError(f"invalid JSON: {reason} (json-repair found no JSON value)")
    return ParsedJSON(value, _dumps(value), ("repaired by json-repair",))
