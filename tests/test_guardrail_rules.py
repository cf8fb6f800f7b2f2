"""The standard rules of ``l0-guardrails``, driven through the engine as a session drives them."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from l0_guardrails import (
    custom_pattern_rule,
    json_rule,
    markdown_rule,
    pattern_rule,
    repetition_rule,
    stall_rule,
    strict_json_rule,
    zero_output_rule,
)

from l0.guardrails import GuardrailRule, create_guardrail_engine
from l0.types import GuardrailViolation, State


def stream(
    rule: GuardrailRule, chunks: Sequence[str], *, tool_calls: int = 0
) -> tuple[list[GuardrailViolation], int | None]:
    """Feed ``chunks`` one check at a time; return every violation and the chunk that tripped."""
    run = create_guardrail_engine([rule]).start(None)
    state = State()
    found: list[GuardrailViolation] = []
    tripped = None
    for index, chunk in enumerate(chunks):
        state._parts.append(chunk)
        got = run.feed(chunk, state)
        if got:
            found.extend(got)
            if tripped is None:
                tripped = index
    state.tool_calls.extend(
        {"id": str(i), "name": "f", "arguments": "{}"} for i in range(tool_calls)
    )
    found.extend(run.finish(state) or ())
    return found, tripped


def split_at(text: str, cuts: Sequence[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts} | {0, len(text)})
    return [text[a:b] for a, b in itertools.pairwise(points) if b > a]


# --- json ------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
    | st.sampled_from(['"', "\\", '\\"', "}{", "][", '"}', "\\\\", "{[", "\n\t"]),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            st.text(max_size=6) | st.sampled_from(['"', "}", "\\", "]"]), children, max_size=5
        )
    ),
    max_leaves=30,
)
dumps_options = st.sampled_from(
    [
        {"separators": (",", ":")},
        {"separators": (", ", ": ")},
        {"indent": 2},
        {"ensure_ascii": False, "separators": (",", ":")},
    ]
)


@settings(max_examples=400, deadline=None)
@given(value=json_values, options=dumps_options, cuts=st.lists(st.integers(0, 10_000), max_size=30))
def test_any_json_split_anywhere_passes_json_and_strict_json(
    value: Any, options: dict[str, Any], cuts: list[int]
) -> None:
    text = json.dumps(value, **options)
    chunks = split_at(text, cuts)
    assert "".join(chunks) == text
    assert stream(json_rule(), chunks) == ([], None)
    assert stream(strict_json_rule(), chunks) == ([], None)


containers = st.one_of(
    st.lists(json_values, min_size=0, max_size=5),
    st.dictionaries(st.text(max_size=5), json_values, max_size=5),
)


@settings(max_examples=300, deadline=None)
@given(
    value=containers,
    cut=st.integers(0, 10_000),
    cuts=st.lists(st.integers(0, 10_000), max_size=10),
)
def test_truncated_json_fails(value: Any, cut: int, cuts: list[int]) -> None:
    text = json.dumps(value, separators=(",", ":"))
    truncated = text[: cut % len(text)]  # a strict prefix: the last closer is always missing
    if not truncated.strip():
        return
    found, _ = stream(json_rule(), split_at(truncated, cuts))
    assert [v.rule for v in found] == ["json"]
    assert found[0].severity == "error"


@settings(max_examples=300, deadline=None)
@given(
    value=containers,
    pick=st.integers(0, 10_000),
    cuts=st.lists(st.integers(0, 10_000), max_size=10),
)
def test_mis_nested_json_fails(value: Any, pick: int, cuts: list[int]) -> None:
    text = json.dumps(value, separators=(",", ":"))
    # Swap one structural closer (outside strings) for the other kind.
    closers = [
        i
        for i, (char, depth_ok) in enumerate(zip(text, _outside_strings(text), strict=True))
        if char in "}]" and depth_ok
    ]
    i = closers[pick % len(closers)]
    broken = text[:i] + ("]" if text[i] == "}" else "}") + text[i + 1 :]
    found, _ = stream(json_rule(), split_at(broken, cuts))
    assert len(found) == 1
    assert "mis-nested" in found[0].message
    assert found[0].position == i


def _outside_strings(text: str) -> list[bool]:
    out, in_string, escape = [], False, False
    for char in text:
        out.append(not in_string)
        if in_string:
            if escape:
                escape = False
            elif char == "\\":
                escape = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
    return out


def test_json_mis_nesting_is_reported_at_the_chunk_where_it_happens() -> None:
    chunks = ['{"a": [1, ', "2}", ', "b": 3}', "]"]
    found, tripped = stream(json_rule(), chunks)
    assert tripped == 1
    assert found[0].message == "mis-nested JSON: expected ']', found '}'"
    assert found[0].position == 11


def test_json_unmatched_closer_and_unclosed_string() -> None:
    found, _ = stream(json_rule(), ['{"a": 1}', "}"])
    assert found[0].message == "unmatched '}'"
    found, _ = stream(json_rule(), ['{"a": "unterminated \\', '"'])
    assert found[0].message == "JSON ends inside a string"


def test_json_rule_ignores_prose_and_accepts_a_fenced_document() -> None:
    assert stream(json_rule(), ["Here is ", "the answer: } ]"]) == ([], None)
    fenced = ["```js", "on\n", '{"a": ', "[1]}\n", "```"]
    assert stream(json_rule(), fenced) == ([], None)
    assert stream(strict_json_rule(), fenced) == ([], None)
    found, _ = stream(json_rule(), ["```json\n", '{"a": [1}'])
    assert "mis-nested" in found[0].message


def test_strict_json_rejects_unparseable_and_non_json_output() -> None:
    found, _ = stream(strict_json_rule(), ['{"a": tru', "e,}"])
    assert [v.rule for v in found] == ["strict_json"]
    assert "not valid JSON" in found[0].message
    found, _ = stream(strict_json_rule(), ["just prose"])
    assert found[0].message == "the output is not JSON"
    assert stream(strict_json_rule(require_json=False), ["just prose"]) == ([], None)
    assert stream(strict_json_rule(), [" 42 "]) == ([], None)


# --- markdown --------------------------------------------------------------------------------


def test_markdown_fences_balanced_at_the_end_in_any_split() -> None:
    text = "# Title\n\n```python\nprint('x')\n```\n\n~~~\nraw\n~~~\n  ```\nindented fence\n  ```"
    for size in (1, 2, 3, 5, 7, 64):
        chunks = [text[i : i + size] for i in range(0, len(text), size)]
        assert stream(markdown_rule(), chunks) == ([], None)


def test_markdown_open_fence_at_the_end_is_a_violation() -> None:
    text = "Intro\n\n```python\nx = 1\n"
    found, tripped = stream(markdown_rule(), [text[i : i + 3] for i in range(0, len(text), 3)])
    assert tripped is None  # an open fence mid-stream is normal
    assert len(found) == 1
    assert found[0].position == 7
    assert "never closed" in found[0].message
    # A ~~~ line does not close a ``` fence, and a shorter fence does not close a longer one.
    found, _ = stream(markdown_rule(), ["````\ncode\n", "```\n~~~\n"])
    assert len(found) == 1
    assert stream(markdown_rule(), ["````\ncode\n", "```\n````"]) == ([], None)


# --- patterns --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "As an AI language model, I cannot browse.",
        "Well... as an AI, I think",
        "I'm just an AI, so",
        "I am only a language model.",
        "I cannot help with that.",
        "Sorry, I can\u2019t assist with this request",
        "I'm sorry, but I can't do that.",
    ],
)
def test_pattern_rule_finds_meta_statements_and_refusals(text: str) -> None:
    found, _ = stream(pattern_rule(), [text])
    assert [v.rule for v in found] == ["pattern"]
    assert found[0].severity == "error"


def test_pattern_rule_leaves_ordinary_text_alone() -> None:
    text = "Paint is an aid to artists; I can help you choose. Assistants said sorry."
    assert stream(pattern_rule(), [text]) == ([], None)


def test_pattern_match_across_chunk_boundaries_found_once() -> None:
    text = "Sure. " * 200 + "As an AI language model I refuse. " + "More text here. " * 100
    for size in (1, 4, 9, 50):
        chunks = [text[i : i + size] for i in range(0, len(text), size)]
        found, _ = stream(pattern_rule(), chunks)
        assert len(found) == 1, size
        assert found[0].position == text.index("As an AI")


def test_pattern_rule_scans_late_text_in_batches_and_at_the_end() -> None:
    text = "x" * 2000 + " as an ai "
    found, tripped = stream(
        pattern_rule(batch=256), [text[i : i + 5] for i in range(0, len(text), 5)]
    )
    assert len(found) == 1
    assert tripped is None  # the last batch was not full: found by finish()


def test_custom_patterns_messages_and_bad_regex() -> None:
    rule = custom_pattern_rule(
        [r"\bTODO\b", (r"lorem ipsum", "placeholder text")], severity="warning"
    )
    found, _ = stream(rule, ["first TODO then Lorem", " Ipsum"])
    assert [(v.rule, v.severity) for v in found] == [("custom_pattern", "warning")] * 2
    assert found[1].message.startswith("placeholder text")
    with pytest.raises(
        ValueError, match=r"custom_pattern.*'\(unclosed'.*not a valid regular expression"
    ):
        custom_pattern_rule(["(unclosed"])
    with pytest.raises(TypeError, match="expected a list"):
        custom_pattern_rule("single string")
    with pytest.raises(ValueError, match="patterns is empty"):
        custom_pattern_rule([])


# --- zero output, stall, repetition ----------------------------------------------------------


def test_zero_output_rule() -> None:
    found, _ = stream(zero_output_rule(), [])
    assert found[0].message == "the model produced no output at all"
    found, _ = stream(zero_output_rule(), [" ", "\n\t"])
    assert found[0].message == "the model produced whitespace only"
    assert stream(zero_output_rule(), [], tool_calls=1) == ([], None)
    assert stream(zero_output_rule(), [" ok"]) == ([], None)


def test_stall_rule_fires_on_invisible_tokens() -> None:
    found, tripped = stream(stall_rule(max_idle_tokens=10), ["hello"] + [" "] * 30 + ["end"])
    assert [v.rule for v in found] == ["stall"]
    assert tripped == 10
    assert stream(stall_rule(max_idle_tokens=10), ["a", " ", "b"] * 20) == ([], None)
    with pytest.raises(ValueError, match="max_idle_tokens=0"):
        stall_rule(max_idle_tokens=0)
    with pytest.raises(ValueError, match="max_idle_seconds=-1"):
        stall_rule(max_idle_seconds=-1)


def test_repetition_rule_cuts_a_loop_early() -> None:
    intro = "Here is a normal introduction that says something useful about the topic. "
    loop = "I will now repeat myself again. "
    chunks = [intro] + [loop] * 1000
    found, tripped = stream(repetition_rule(), chunks)
    assert [v.rule for v in found] == ["repetition"]
    assert tripped is not None
    assert tripped < 30  # about 4 periods plus one stride, not the whole stream


def test_repetition_rule_does_not_flag_varied_text() -> None:
    import random

    rng = random.Random(3)
    words = [
        "alpha",
        "beta",
        "gamma",
        "delta",
        "epsilon",
        "zeta",
        "eta",
        "theta",
        "iota",
        "kappa",
        "lambda",
        "mu",
    ]
    text = " ".join(rng.choice(words) for _ in range(5000))
    assert stream(repetition_rule(), [text[i : i + 17] for i in range(0, len(text), 17)]) == (
        [],
        None,
    )
    with pytest.raises(ValueError, match="exceeds window"):
        repetition_rule(min_period=32, max_repeats=10, window=256)
