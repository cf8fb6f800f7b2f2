"""Checks that batch their work: the same findings however the text is cut or held back.

The engine hands text to a rule session that says how much it ``wants`` only once that much
is pending, and the session holds drift text until the drift run is due; the rules and
detectors keep incremental state. Each of these is compared here with feeding every check,
or with reading the whole text at once.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from l0_drift import detectors
from l0_guardrails import (
    json_rule,
    markdown_rule,
    pattern_rule,
    repetition_rule,
    strict_json_rule,
)

import l0
from l0._options import DEFAULT_INTERVALS
from l0.errors import GuardrailCheckError
from l0.guardrails import GuardrailContext, GuardrailRule, create_guardrail_engine
from l0.types import GuardrailViolation, State
from tests import drift_texts
from tests.runtime_helpers import cut_at


def _session_findings(rule: GuardrailRule, chunks: Sequence[str]) -> list[tuple[Any, ...]]:
    """Feed ``chunks`` straight into one session (no engine), then finish it."""
    session = rule.session(rule)  # type: ignore[misc]
    found: list[GuardrailViolation] = []
    for chunk in chunks:
        found.extend(session.feed(chunk, None) or ())
    text = "".join(chunks)
    found.extend(session.finish(GuardrailContext(text, completed=True)) or ())
    return [(v.rule, v.message, v.position) for v in found]


# --- bugs found by the chunking properties ----------------------------------------------------


def test_an_empty_delta_keeps_a_pending_escape_in_a_json_string() -> None:
    # '{"a": "x\"}' ends inside a string: the quote is escaped. An empty delta between the
    # backslash and the quote used to drop the escape, and the quote then closed the string.
    chunks = ['{"a": "x\\', "", '"}']
    whole = _session_findings(json_rule(), ["".join(chunks)])
    assert whole == [("json", "JSON ends inside a string", 11)]
    assert _session_findings(json_rule(), chunks) == whole
    assert _session_findings(strict_json_rule(), chunks)[0][1] == "JSON ends inside a string"


def test_an_open_fence_is_reported_where_its_line_starts_however_it_was_cut() -> None:
    # A fence line longer than the 16 characters the rule reads, cut after them: the position
    # used to be computed from the characters kept, not from where the line started.
    text = "intro\n```python-with-a-long-info-string\nprint(1)\n"
    whole = _session_findings(markdown_rule(), [text])
    assert whole == [("markdown", "code fence '```' opened here is never closed", 6)]
    for cut in range(1, len(text)):
        assert _session_findings(markdown_rule(), [text[:cut], text[cut:]]) == whole, cut


# --- sessions: any cut of the text gives the same findings ------------------------------------

# Pieces that make JSON (valid or not), fences, escapes, refusals and loops when strung together.
PIECES = [
    "{",
    "}",
    "[",
    "]",
    '"',
    '\\"',
    "\\",
    '"key": ',
    '"a]b}c"',
    ", ",
    "1.5",
    "true",
    "\n",
    "```",
    "```json\n",
    "~~~~",
    "   ```",
    "As an AI language model, ",
    "I cannot help with that. ",
    "The same words again. ",
    "The same words again. ",
    "plain prose with some words ",
    "é ß 😀 ",
    "    ",
]


def _text(draw: Any) -> str:
    return "".join(draw(st.lists(st.sampled_from(PIECES), max_size=60)))


@st.composite
def cut_text(draw: Any) -> tuple[str, list[str]]:
    """A text and a random cutting of it, empty pieces included."""
    text = _text(draw)
    chunks = cut_at(text, draw(st.lists(st.integers(0, len(text)), max_size=25)))
    return text, chunks


@settings(max_examples=300, deadline=None)
@given(cut_text())
def test_json_and_markdown_findings_do_not_depend_on_the_cutting(case: Any) -> None:
    text, chunks = case
    for rule in (json_rule(), strict_json_rule(require_json=False), markdown_rule()):
        assert _session_findings(rule, chunks) == _session_findings(rule, [text]), rule.name


# --- the engine: holding text back changes nothing --------------------------------------------


def _engine_findings(
    rules: Sequence[GuardrailRule], chunks: Sequence[str], *, observed: bool
) -> Any:
    """Per check, the violations the engine returned; observed runs feed every rule each check."""
    emit = (lambda kind, **fields: None) if observed else None
    run = create_guardrail_engine(rules).start(emit)
    state = State()
    out: list[Any] = []
    for index, chunk in enumerate(chunks):
        state._parts.append(chunk)
        found = run.feed(chunk, state)
        if found:
            out.append((index, [(v.rule, v.message, v.position, v.severity) for v in found]))
    found = run.finish(state)
    out.append(("end", [(v.rule, v.message, v.position, v.severity) for v in found or ()]))
    return out


def _rule_sets() -> list[list[GuardrailRule]]:
    return [
        list(l0.Guardrails.strict()),
        list(l0.Guardrails.recommended()),
        [
            repetition_rule(min_period=4, max_repeats=3, window=200, stride=5),
            pattern_rule(batch=16, eager=20, tail=40),
            json_rule(),
        ],
    ]


@settings(max_examples=40, deadline=None)
@given(cut_text())
def test_held_back_text_gives_the_findings_of_feeding_every_check(case: Any) -> None:
    _, chunks = case
    for rules in _rule_sets():
        assert _engine_findings(rules, chunks, observed=False) == _engine_findings(
            rules, chunks, observed=True
        )


def test_a_loop_is_cut_at_the_same_check_with_text_held_back() -> None:
    intro = "Here is a normal introduction that says something useful about the topic. "
    chunks = [intro] + ["I will", " now repeat", " myself again. "] * 200
    rules = list(l0.Guardrails.strict())
    held = _engine_findings(rules, chunks, observed=False)
    assert held == _engine_findings(rules, chunks, observed=True)
    assert held[0][1][0][0] == "repetition"
    assert held[0][0] < 30


def test_batching_sessions_are_fed_only_when_they_want_text() -> None:
    calls: list[str] = []

    class Batching:
        wants = 100

        def __init__(self, rule: GuardrailRule) -> None:
            pass

        def feed(self, delta: str, state: State | None) -> None:
            calls.append(delta)

        def finish(self, context: Any) -> None:
            calls.append("<end>")

    rule = GuardrailRule("batching", streaming=True, session=Batching)
    run = create_guardrail_engine([rule]).start(None)
    state = State()
    for _ in range(30):
        run.feed("0123456789", state)
    run.finish(state)
    # 30 checks of 10 characters: three feeds of 100, then the end (nothing left over).
    assert calls == ["0123456789" * 10] * 3 + ["<end>"]
    calls.clear()
    run = create_guardrail_engine([rule]).start(None)
    for _ in range(5):
        run.feed("0123456789", state)
    run.finish(state)
    assert calls == ["0123456789" * 5, "<end>"]  # what was held reaches it before the end


def test_an_error_in_a_held_back_feed_names_the_rule() -> None:
    class Broken:
        wants = 5

        def __init__(self, rule: GuardrailRule) -> None:
            pass

        def feed(self, delta: str, state: State | None) -> None:
            raise RuntimeError("boom")

        def finish(self, context: Any) -> None:
            return None

    run = create_guardrail_engine([GuardrailRule("broken", streaming=True, session=Broken)]).start(
        None
    )
    assert run.feed("abc", State()) is None  # held: 3 of 5 characters
    with pytest.raises(GuardrailCheckError, match="'broken' raised RuntimeError: boom"):
        run.feed("def", State())


# --- drift: the cheap paths give what the regexes gave ----------------------------------------

_OLD_WORD = re.compile(r"[A-Za-z]{2,}")
_OLD_TAIL_WORD = re.compile(r"[A-Za-z]+$")
_JSON_WORDS = {"true", "false", "null"}
drift_text = st.lists(
    st.sampled_from([*"ab zZ09\"{}[],:\n\\éßΩ😀'.", "true", "null", "xtrue", "Ab\n"]),
    max_size=40,
).map("".join)


@settings(max_examples=500, deadline=None)
@given(drift_text)
def test_prose_words_count_what_the_word_regex_found(text: str) -> None:
    expected = sum(1 for w in _OLD_WORD.findall(text) if w not in _JSON_WORDS)
    assert detectors._prose_words(text) == expected


@settings(max_examples=500, deadline=None)
@given(drift_text)
def test_the_tail_word_cut_is_where_the_tail_regex_matched(text: str) -> None:
    match = _OLD_TAIL_WORD.search(text)
    assert detectors._cut_tail_word(text) == (len(text) if match is None else match.start())


META_PIECES = [
    "as an ai",
    "as a ",
    "an ",
    "ai ",
    "i'm ",
    "i\u2019m ",
    "i am ",
    "just ",
    "a language model",
    "large language model",
    "artificial intelligence",
    "llm",
    "assistant",
    "model",
    "i cannot ",
    "i can't ",
    "i can not ",
    "unable to ",
    "not able to ",
    "actually ",
    "  help",
    " assist",
    "sorry, but",
    "i apologise, but",
    "i apologize, but",
    "let me explain what i am doing",
    "my training data",
    "my knowledge cutoff",
    "as of my last update",
    "words",
    ", ",
    "\n",
]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(META_PIECES), max_size=12))
def test_the_meta_needles_never_hide_a_match(pieces: list[str]) -> None:
    text = "".join(pieces)
    if detectors._META.search(text) is not None:
        assert detectors._may_meta(text)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c", "d", "e", "f", "gg", "hh"]), max_size=120))
def test_few_distinct_is_exact_whenever_it_answers(words: list[str]) -> None:
    distinct = detectors._few_distinct(words, 0.2)
    if distinct is None:
        assert len(set(words)) >= 0.2 * len(words)
    else:
        assert distinct == len(set(words))


# --- drift in a session: held text reaches the run exactly when it is due ---------------------


def _drift_metrics_by_hand(tokens: Sequence[str], every: int) -> list[dict[str, float]]:
    """The drift checks of the old way: the run fed at every check, then finished."""
    engine = l0.drift.create_drift_engine(l0.DriftConfig(), l0.build_plugin_manager())
    run = engine.start(None)
    out = []
    for start in range(0, len(tokens), every):
        result = run.feed("".join(tokens[start : start + every]))
        if result is not None:
            out.append(dict(result.details))
    result = run.finish("".join(tokens))
    if result is not None:
        out.append(dict(result.details))
    return out


@pytest.mark.parametrize("name", ["prose", "json", "tone", "loop"])
async def test_drift_checks_in_a_session_match_feeding_every_check(name: str) -> None:
    text = {
        "prose": drift_texts.PROSE * 3,
        "json": drift_texts.JSON,
        "tone": drift_texts.TONE_SHIFT,
        "loop": drift_texts.PROSE * 2 + "I will say this again. " * 80,
    }[name]
    tokens = [text[i : i + 3] for i in range(0, len(text), 3)]
    seen: list[dict[str, float]] = []

    def on_event(event: Any) -> None:
        if event.type == "DRIFT_CHECK_RESULT":
            seen.append(dict(event.data["metrics"]))

    async def source() -> Any:
        for token in tokens:
            yield token

    result = l0.run(
        source,
        drift=True,
        guardrails=[l0.json_rule()],
        check_intervals={"guardrails": 7, "drift": 7},
        retry=l0.Retry(attempts=0, max_retries=0),
        on_event=on_event,
    )
    with contextlib.suppress(l0.L0Error):
        await result.read()
    await result.wait_callbacks()
    expected = _drift_metrics_by_hand(tokens, 7)
    if result.state.drift_detected:
        expected = expected[: len(seen)]  # the attempt stopped at the check that found it
    assert seen == expected
    assert len(seen) >= 2
    assert result.state.drift_detected == (name in ("tone", "loop"))


def test_a_session_that_wants_something_odd_is_named() -> None:
    class Odd:
        wants = "lots"

        def __init__(self, rule: GuardrailRule) -> None:
            pass

        def feed(self, delta: str, state: State | None) -> None:
            return None

        def finish(self, context: Any) -> None:
            return None

    engine = create_guardrail_engine([GuardrailRule("odd", streaming=True, session=Odd)])
    with pytest.raises(
        GuardrailCheckError, match=r"'odd' raised TypeError: .*wants='lots'.*an int"
    ):
        engine.start(None)


@pytest.mark.parametrize(
    "chunks",
    [
        ['{}"', '{"'],  # found by the property above: a string after the value, cut open
        ['{} "a', 'b" ]'],
        ['{}"abc [', "x"],
        ['{"a": 1}', ' and "quoted', ' prose"'],
    ],
)
def test_a_string_after_the_top_level_value_reads_the_same_whatever_the_cutting(
    chunks: list[str],
) -> None:
    text = "".join(chunks)
    for rule in (json_rule(), strict_json_rule(require_json=False)):
        assert _session_findings(rule, chunks) == _session_findings(rule, [text]), rule.name


@pytest.mark.parametrize("observed", [False, True])
def test_a_run_finished_before_any_feed_still_checks_the_kept_text(observed: bool) -> None:
    # A continuation that added nothing: the rules' first sight of the kept text is finish().
    state = State()
    state._prefix = '{"a": [1, 2'
    events: list[str] = []
    run = create_guardrail_engine([json_rule()]).start(
        (lambda kind, **_: events.append(kind)) if observed else None
    )
    found = run.finish(state)
    assert found is not None
    assert [(v.rule, v.position) for v in found] == [("json", len(state._prefix))]
    assert "never closed" in found[0].message


# --- end-only rules: no checks while the answer streams ------------------------------------


def _count_checks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the token count at every check the sessions run from now on."""
    from l0._checks import ChecksMixin

    calls: list[int] = []
    check = ChecksMixin._check

    def counted(self: Any) -> None:
        calls.append(len(self.state._parts))
        check(self)

    monkeypatch.setattr(ChecksMixin, "_check", counted)
    return calls


@pytest.mark.parametrize("observed", [False, True])
async def test_end_only_rules_cost_no_checks_while_streaming(
    monkeypatch: pytest.MonkeyPatch, observed: bool
) -> None:
    calls = _count_checks(monkeypatch)

    async def tokens() -> Any:
        for _ in range(100):
            yield "word "

    events: list[Any] = []
    result = l0.run(
        tokens,
        guardrails=[l0.zero_output_rule()],
        on_event=events.append if observed else None,
    )
    assert await result.read() == "word " * 100
    if observed:
        # An observed run reports every check.
        assert len(calls) >= 100 // DEFAULT_INTERVALS["guardrails"]
    else:
        assert calls == []  # nothing streams to feed: the session never stops to check

    async def blank() -> Any:
        for _ in range(100):
            yield " "

    with pytest.raises(l0.RetryExhaustedError):
        await l0.run(
            blank, guardrails=[l0.zero_output_rule()], retry=l0.Retry(max_retries=0)
        ).read()


async def test_default_intervals_share_one_check(monkeypatch: pytest.MonkeyPatch) -> None:
    # Guardrails, drift and checkpoints default to the same interval, so a full-stack run stops
    # once per interval for all three (every 10 tokens), not once per 5 tokens for the rules.
    assert len(set(DEFAULT_INTERVALS.values())) == 1
    calls = _count_checks(monkeypatch)

    async def tokens() -> Any:
        for i in range(100):
            yield f"w{i} "

    result = l0.run(
        tokens,
        guardrails=l0.Guardrails.strict(),
        drift=True,
        continue_from_last_good_token=True,
    )
    text = await result.read()
    assert text == "".join(f"w{i} " for i in range(100))
    interval = DEFAULT_INTERVALS["guardrails"]
    assert calls == list(range(interval, 101, interval))
    # A smaller guardrail interval still wins for the rules.
    calls.clear()
    await l0.run(
        tokens, guardrails=l0.Guardrails.strict(), check_intervals={"guardrails": 4}
    ).read()
    assert calls[:3] == [4, 8, 12]
