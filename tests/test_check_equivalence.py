"""Rewritten check computations against straightforward references (issue 11, last round).

Each fast path (the JSON rule's shape scan, held text, the engine's direct calls, drift's window
features) must give exactly what a plain, obviously correct computation gives, on random texts
cut at random places.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from l0_guardrails import json_rule, strict_json_rule

from l0.guardrails import GuardrailContext, GuardrailRule

# Pieces that make valid and broken JSON: brackets, strings, escapes, brackets inside strings.
JSON_PIECES = [
    "{",
    "}",
    "[",
    "]",
    '"',
    "\\",
    '\\"',
    "\\\\",
    '"k": ',
    '"a]b}c"',
    ", ",
    "1",
    "x",
    "\n",
    "é",
]


def reference_json(text: str) -> list[tuple[str, str, int]]:
    """The json rule's findings on ``text`` (starting with a bracket), a character at a time."""
    stack: list[str] = []
    in_string = escape = False
    for i, char in enumerate(text):
        if in_string:
            if escape:
                escape = False
            elif char == "\\":
                escape = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            stack.append("}" if char == "{" else "]")
        elif char in "}]":
            if not stack:
                return [("json", f"unmatched {char!r}", i)]
            if stack[-1] != char:
                return [("json", f"mis-nested JSON: expected {stack[-1]!r}, found {char!r}", i)]
            stack.pop()
    if in_string and stack:
        return [("json", "JSON ends inside a string", len(text))]
    if stack:
        missing = "".join(reversed(stack))
        message = f"JSON is incomplete: {len(stack)} bracket(s) never closed (missing {missing!r})"
        return [("json", message, len(text))]
    return []


def _findings(rule: GuardrailRule, chunks: list[str]) -> list[tuple[Any, ...]]:
    session = rule.session(rule)  # type: ignore[misc]
    found = []
    for chunk in chunks:
        found.extend(session.feed(chunk, None) or ())
    found.extend(session.finish(GuardrailContext("".join(chunks), completed=True)) or ())
    return [(v.rule, v.message, v.position) for v in found]


@st.composite
def json_cut(draw: Any) -> tuple[str, list[str]]:
    """A JSON-like text (starting with a bracket) and a random cutting of it."""
    body = "".join(draw(st.lists(st.sampled_from(JSON_PIECES), max_size=40)))
    text = draw(st.sampled_from(["{", "["])) + body
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=20)))
    chunks, start = [], 0
    for cut in cuts:
        chunks.append(text[start:cut])
        start = cut
    chunks.append(text[start:])
    return text, chunks


@settings(max_examples=400, deadline=None)
@given(json_cut())
def test_the_json_rule_finds_what_a_character_scan_finds(case: tuple[str, list[str]]) -> None:
    text, chunks = case
    assert _findings(json_rule(), chunks) == reference_json(text)


@settings(max_examples=200, deadline=None)
@given(json_cut())
def test_a_violation_is_reported_by_the_feed_of_the_chunk_it_is_in(
    case: tuple[str, list[str]],
) -> None:
    # Text without a closing bracket is held back; a violation must still come out of the
    # feed that brought its character, never later.
    text, chunks = case
    expected = [f for f in reference_json(text) if not f[1].startswith(("JSON ends", "JSON is"))]
    rule = json_rule()
    session = rule.session(rule)  # type: ignore[misc]
    seen = 0
    for chunk in chunks:
        found = session.feed(chunk, None)
        if found:
            assert expected
            assert seen <= found[0].position < seen + len(chunk)
            assert [(v.rule, v.message, v.position) for v in found] == expected
            return
        seen += len(chunk)
    assert not expected


def test_strict_json_parses_what_was_held_back() -> None:
    rule = strict_json_rule()
    session = rule.session(rule)  # type: ignore[misc]
    for chunk in ['{"a": [1', ", 2", "]}"]:
        assert session.feed(chunk, None) is None
    assert session.finish(GuardrailContext('{"a": [1, 2]}', completed=True)) is None
