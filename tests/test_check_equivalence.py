"""Rewritten check computations against straightforward references (issue 11, last round).

Each fast path (the JSON rule's shape scan, held text, the engine's direct calls, drift's window
features) must give exactly what a plain, obviously correct computation gives, on random texts
cut at random places.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from l0_drift import detectors
from l0_guardrails import (
    json_rule,
    json_rules,
    repetition_rule,
    stall_rule,
    strict_json_rule,
    text_rules,
    zero_output_rule,
)
from l0_guardrails.repetition import loop_period

import l0
from l0.errors import GuardrailCheckError
from l0.guardrails import GuardrailContext, GuardrailRule, create_guardrail_engine
from l0.types import GuardrailViolation, State
from tests.runtime_helpers import cut_at

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
    found: list[GuardrailViolation] = []
    for chunk in chunks:
        found.extend(session.feed(chunk, None) or ())
    found.extend(session.finish(GuardrailContext("".join(chunks), completed=True)) or ())
    return [(v.rule, v.message, v.position) for v in found]


@st.composite
def json_cut(draw: Any) -> tuple[str, list[str]]:
    """A JSON-like text (starting with a bracket) and a random cutting of it."""
    body = "".join(draw(st.lists(st.sampled_from(JSON_PIECES), max_size=40)))
    text = draw(st.sampled_from(["{", "["])) + body
    chunks = cut_at(text, draw(st.lists(st.integers(0, len(text)), max_size=20)))
    return text, chunks


@settings(max_examples=400, deadline=None)
@given(json_cut(), st.sampled_from([1, 2, 7, 256]))
def test_the_json_rule_finds_what_a_character_scan_finds(
    case: tuple[str, list[str]], batch: int
) -> None:
    text, chunks = case
    assert _findings(json_rule(batch=batch), chunks) == reference_json(text)


@settings(max_examples=200, deadline=None)
@given(json_cut())
def test_a_violation_is_reported_by_the_feed_of_the_chunk_it_is_in(
    case: tuple[str, list[str]],
) -> None:
    # Text without a closing bracket is held back; a violation must still come out of the
    # feed that brought its character, never later.
    text, chunks = case
    expected = [f for f in reference_json(text) if not f[1].startswith(("JSON ends", "JSON is"))]
    rule = json_rule(batch=1)
    session = rule.session(rule)  # type: ignore[misc]
    seen = 0
    for chunk in chunks:
        found = session.feed(chunk, None)
        if found:
            assert expected
            position = found[0].position
            assert position is not None
            assert seen <= position < seen + len(chunk)
            assert [(v.rule, v.message, v.position) for v in found] == expected
            return
        seen += len(chunk)
    assert not expected


@settings(max_examples=300, deadline=None)
@given(json_cut(), st.integers(2, 40))
def test_a_batched_violation_is_reported_within_a_batch_of_where_it_is(
    case: tuple[str, list[str]], batch: int
) -> None:
    # Scans wait for ``batch`` characters: a violation comes out of the first feed after which
    # that many have arrived since the previous scan, or at the end, always at its position.
    text, chunks = case
    expected = [f for f in reference_json(text) if not f[1].startswith(("JSON ends", "JSON is"))]
    rule = json_rule(batch=batch)
    session = rule.session(rule)  # type: ignore[misc]
    seen = 0
    for chunk in chunks:
        found = session.feed(chunk, None)
        if found:
            assert [(v.rule, v.message, v.position) for v in found] == expected
            position = expected[0][2]
            assert position < seen + len(chunk)  # never before its text came
            assert seen - position < batch  # the feed before still had it under a batch
            return
        seen += len(chunk)
    found = session.finish(GuardrailContext(text, completed=True)) or []
    if expected:
        assert [(v.rule, v.message, v.position) for v in found] == expected
        assert len(text) - expected[0][2] <= batch


def test_json_batch_is_validated() -> None:
    for bad in (0, -1, 1.5, True, "8"):
        with pytest.raises(ValueError, match=rf"json rule: batch={bad!r}: expected an int >= 1"):
            json_rule(batch=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"strict_json rule: batch="):
            strict_json_rule(batch=bad)  # type: ignore[arg-type]


def test_strict_json_parses_what_was_held_back() -> None:
    rule = strict_json_rule()
    session = rule.session(rule)  # type: ignore[misc]
    for chunk in ['{"a": [1', ", 2", "]}"]:
        assert session.feed(chunk, None) is None
    assert session.finish(GuardrailContext('{"a": [1, 2]}', completed=True)) is None


# --- the final parse: orjson's verdict, with or without the optional validator -----------------

NEAR_JSON = [
    *'{}[],: \n\t\r"\\0123456789-+.eEx',
    "true",
    "false",
    "null",
    "tru",
    "NaN",
    "Infinity",
    '"a"',
    '"\\u00e9"',
    '"\\ud800"',
    '"\\ud83d\\ude00"',
    '"\\u0000"',
    '"\\x"',
    '"\x01"',
    '"\x7f"',
    '"é😀"',
    "\ufeff",
    "\x00",
    "123456789012345678901234567890",
    "18446744073709551616",
    "-9223372036854775809",
    "1e400",
    "1.0e-400",
    "01",
    "-0",
    "1.",
    ".5",
]


def _orjson_error(text: str) -> str | None:
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return str(exc)
    return None


@settings(max_examples=1500, deadline=None)
@given(
    st.lists(st.sampled_from(NEAR_JSON), max_size=30).map("".join)
    | st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(),
        lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    ).map(lambda value: json.dumps(value, ensure_ascii=False))
)
@example("\ufeff0")  # found by this test: the validator skips a byte order mark
@example('\ufeff{"a": 1}')
def test_the_final_parse_gives_orjsons_verdict(text: str) -> None:
    assert json_rules._json_error(text) == _orjson_error(text)
    # What _json_error relies on: besides a leading byte order mark (which it hands to orjson),
    # the validator accepts nothing that orjson rejects.
    if json_rules._simdjson is not None and not text.startswith("\ufeff"):
        try:
            json_rules._simdjson.Parser().parse(text.encode())
        except Exception:
            return
        assert _orjson_error(text) is None, "the validator accepted what orjson rejects"


def test_the_final_parse_without_the_optional_validator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(json_rules, "_simdjson", None)
    assert json_rules._json_error('{"a": [1, 2]}') is None
    assert json_rules._json_error("[123456789012345678901234567890]") is None
    error = json_rules._json_error('{"a": [1, 2,]}')
    assert error is not None
    assert error == _orjson_error('{"a": [1, 2,]}')
    rule = strict_json_rule()
    session = rule.session(rule)  # type: ignore[misc]
    session.feed('{"a": [1, 2,]}', None)
    found = session.finish(GuardrailContext('{"a": [1, 2,]}', completed=True))
    assert found is not None
    assert found[0].message.startswith("the output is not valid JSON: ")


def test_the_optional_validator_is_installed_for_the_tests() -> None:
    # The test environment installs l0-guardrails[simdjson], so both paths are exercised.
    assert json_rules._simdjson is not None
    assert json_rules._json_error("[18446744073709551616]") is None  # it rejects; orjson accepts
    assert json_rules._json_error("[1] x") == _orjson_error("[1] x")


def _engine_findings(
    rules: list[GuardrailRule], chunks: list[str], *, observed: bool, prefix: str = ""
) -> Any:
    emit = (lambda kind, **fields: None) if observed else None
    run = create_guardrail_engine(rules).start(emit)
    state = State(_prefix=prefix)
    out: list[Any] = []
    for index, chunk in enumerate(chunks):
        state._parts.append(chunk)
        found = run.feed(chunk, state)
        if found:
            out.append((index, [(v.rule, v.message, v.position, v.severity) for v in found]))
    found = run.finish(state)
    out.append(("end", [(v.rule, v.message, v.position, v.severity) for v in found or ()]))
    return out


def _straight(rule: GuardrailRule) -> GuardrailRule:
    """``rule`` with sessions that read every check (no ``wants``): the engine calls it straight."""

    class Straight:
        def __init__(self, rule: GuardrailRule) -> None:
            inner = base.session(base)  # type: ignore[misc]
            self.feed = inner.feed
            self.finish = inner.finish

    base = rule
    return dataclasses.replace(rule, session=Straight)


@settings(max_examples=200, deadline=None)
@given(json_cut())
def test_a_single_rule_called_straight_finds_what_the_observed_run_finds(
    case: tuple[str, list[str]],
) -> None:
    _, chunks = case
    for base in (
        json_rule(batch=1),
        strict_json_rule(require_json=False, batch=3),
        json_rule(severity="fatal"),
    ):
        rule = _straight(base)
        assert _engine_findings([rule], chunks, observed=False) == _engine_findings(
            [rule], chunks, observed=True
        )


def test_a_single_rule_called_straight_gets_the_severity_override() -> None:
    engine = create_guardrail_engine([_straight(json_rule(batch=1))], severity={"json": "warning"})
    run = engine.start(None)
    assert run.feed == run._feed_one  # the path under test
    found = run.feed('{"a": ]', State())
    assert found is not None
    assert [(v.rule, v.severity, v.position) for v in found] == [("json", "warning", 6)]


def test_a_single_rule_that_raises_is_named() -> None:
    class Broken:
        def __init__(self, rule: GuardrailRule) -> None:
            pass

        def feed(self, delta: str, state: State | None) -> None:
            raise KeyError("boom")

        def finish(self, context: GuardrailContext) -> None:
            return None

    run = create_guardrail_engine([GuardrailRule("broken", streaming=True, session=Broken)]).start(
        None
    )
    with pytest.raises(GuardrailCheckError, match=r"'broken' raised KeyError"):
        run.feed("text", State())


# --- the repetition rule's probe ---------------------------------------------------------------


def reference_repetition(
    chunks: list[str], min_period: int, max_repeats: int, window: int, stride: int
) -> list[tuple[str, str, int]]:
    """The repetition rule, spelled out: every ``stride`` characters, ``loop_period`` on the text.

    The text searched is the end of the output the rule keeps (up to ``2 * window`` characters,
    cut back to ``window`` when it grows past that), the look-back alternates as documented.
    """
    max_period = window // max_repeats
    short = min(max_period, 4 * stride)
    text = ""
    kept = queued = full_at = 0
    waiting = False

    def probe(size: int) -> list[tuple[str, str, int]]:
        nonlocal kept, full_at
        kept += size
        if kept > 2 * window:
            kept = window
        seen = len(text)
        if seen >= full_at:
            reach = max_period
            full_at = seen + short
        else:
            reach = short
        buffer = text[seen - kept :]
        period = loop_period(buffer, min_period, max_repeats, reach)
        if period is None:
            return []
        repeats = max_repeats
        while (repeats + 1) * period <= kept and buffer.endswith(buffer[-period:] * (repeats + 1)):
            repeats += 1
        unit = buffer[-period:].strip()[:60]
        message = (
            f"the output repeats itself: {unit!r} ({period} characters) came {repeats} times "
            "in a row"
        )
        return [("repetition", message, seen - repeats * period)]

    for chunk in chunks:
        text += chunk
        queued += len(chunk)
        if queued < stride:
            waiting = True
            continue
        found = probe(queued)
        queued, waiting = 0, False
        if found:
            return found
    return probe(queued) if waiting else []


LOOP_PIECES = ["abcd", "abcd ", "I will repeat. ", "x", " ", "word ", "é😀", "\n", "12345678"]


@st.composite
def loop_cut(draw: Any) -> list[str]:
    text = "".join(draw(st.lists(st.sampled_from(LOOP_PIECES), max_size=80)))
    chunks = cut_at(text, draw(st.lists(st.integers(0, len(text)), max_size=30)))
    return chunks


@settings(max_examples=300, deadline=None)
@given(loop_cut(), st.sampled_from([(4, 3, 64, 5), (4, 2, 64, 1), (8, 4, 2048, 32), (5, 3, 90, 7)]))
def test_the_repetition_probe_finds_what_loop_period_finds(
    chunks: list[str], params: tuple[int, int, int, int]
) -> None:
    min_period, max_repeats, window, stride = params
    rule = repetition_rule(
        min_period=min_period, max_repeats=max_repeats, window=window, stride=stride
    )
    assert _findings(rule, chunks) == reference_repetition(chunks, *params)


# --- drift detectors ---------------------------------------------------------------------------

NEEDLE_PIECES = [
    *detectors._META_NEEDLES,
    " ai",
    "ai",
    "able to",
    "able",
    "my",
    "my ",
    "as of",
    "un",
    "not ",
    "a ",
    "an",
    " ",
    "words",
    "i ca",
]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(NEEDLE_PIECES), max_size=10))
def test_the_grouped_meta_gate_answers_as_every_needle_would(pieces: list[str]) -> None:
    text = "".join(pieces)
    assert detectors._may_meta(text) == any(n in text for n in detectors._META_NEEDLES)


def test_every_meta_needle_is_searched() -> None:
    for needle in detectors._META_NEEDLES:
        assert detectors._may_meta(f"some words {needle} more words"), needle
    assert not detectors._may_meta("plain words about rivers, bridges and mountains")


@settings(max_examples=60, deadline=None)
@given(json_cut(), st.sampled_from(["", '{"resumed": [', "]"]))
def test_runs_of_sessions_only_find_what_the_observed_run_finds(
    case: tuple[str, list[str]], prefix: str
) -> None:
    # Sessions only (no check functions): the unobserved run takes its lean per-check path.
    _, chunks = case
    for rules in (
        [zero_output_rule()],
        [stall_rule(max_idle_tokens=3), zero_output_rule()],
        [json_rule(), repetition_rule(min_period=4, max_repeats=2, window=64, stride=3)],
        list(l0.Guardrails.strict()),
    ):
        unobserved = _engine_findings(rules, chunks, observed=False, prefix=prefix)
        assert unobserved == _engine_findings(rules, chunks, observed=True, prefix=prefix)


# --- markdown fence lines ---------------------------------------------------------------------

MD_PIECES = ["\n", " ", "   ", "    ", "```", "~~~", "``", "~~", "`", "text", "\n```py\n", "\t"]
_MULTILINE_FENCE = re.compile(r"^ {0,3}(?:`{3}|~{3})", re.MULTILINE)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(MD_PIECES), max_size=40))
def test_fence_lines_are_the_lines_a_multiline_anchor_finds(pieces: list[str]) -> None:
    text = "".join(pieces)
    first, last = text.find("\n"), text.rfind("\n")
    if first < 0:
        return
    expected = [m.start() for m in _MULTILINE_FENCE.finditer(text, first + 1, last + 1)]
    found = [m.start() + 1 for m in text_rules._FENCE_LINE.finditer(text, first, last + 1)]
    assert found == expected


_BACKTRACKING_STRINGS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BACKTRACKING_BODY = re.compile(r'[^"\\]*(?:\\.[^"\\]*)*', re.DOTALL)


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from([*JSON_PIECES, "\x00", "ab", " x\\y ", '\\"', "é"]), max_size=40))
def test_strings_blanked_by_split_are_what_the_regex_blanks(pieces: list[str]) -> None:
    # The drift format tracker's fast path against the regex it replaces, whatever the
    # backslashes: inside strings, outside them, doubled, trailing, before quotes.
    text = "".join(pieces)
    assert detectors._blank_strings(text) == detectors._blank_strings_regex(text)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(JSON_PIECES), max_size=40))
def test_possessive_string_regexes_match_what_backtracking_ones_match(pieces: list[str]) -> None:
    text = "".join(pieces)
    assert detectors._STRINGS.sub(" ", text) == _BACKTRACKING_STRINGS.sub(" ", text)
    for start in range(len(text) + 1):
        body = detectors._STRING_BODY.match(text, start)
        reference = _BACKTRACKING_BODY.match(text, start)
        assert body is not None
        assert reference is not None
        assert body.end() == reference.end()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(JSON_PIECES), max_size=120), st.sampled_from(["{", "["]))
def test_long_deltas_with_many_brackets_find_what_a_character_scan_finds(
    pieces: list[str], first: str
) -> None:
    # Whole documents in one or two deltas (as a provider sending large chunks would).
    text = first + "".join(pieces)
    half = len(text) // 2
    assert _findings(json_rule(), [text]) == reference_json(text)
    assert _findings(json_rule(), [text[:half], text[half:]]) == reference_json(text)
