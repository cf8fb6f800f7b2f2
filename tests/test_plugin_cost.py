"""Cheaper drift and repetition code computes what the straightforward code computes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from l0_drift import detectors
from l0_guardrails.repetition import RepetitionSession, repetition_rule

from l0.types import GuardrailViolation

TONE_PIECES = ["lol", "gonna", "dude", "The", "report", "SHOUT", "y'all", "!", " ", "\n", "é", "🎉"]


def reference_tone(text: str) -> tuple[float, float, float, float]:
    """``detectors._tone`` with the slang counted word by word, no shortcut."""
    data = text.encode("ascii", "ignore")
    letters = sum(1 for c in data if 65 <= c <= 90 or 97 <= c <= 122)
    upper = sum(1 for c in data if 65 <= c <= 90)
    words = data.translate(detectors._WORD_BYTES).split()
    slang = sum(1 for w in words if w in detectors._SLANG)
    size = max(len(text), 1)
    return (
        upper / letters if letters >= 40 else 0.0,
        100 * text.count("!") / size,
        100 * slang / max(len(words), 1),
        100 * len(detectors._EMOJI.findall(text)) / size,
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(TONE_PIECES), max_size=80))
def test_tone_equals_the_word_by_word_count(pieces: list[str]) -> None:
    text = " ".join(pieces)
    assert detectors._tone(text) == reference_tone(text)


def verdict(chunks: list[str], stride: int) -> list[GuardrailViolation] | None:
    rule = repetition_rule(min_period=8, max_repeats=3, window=256, stride=stride)
    session = RepetitionSession(rule, 8, 3, 256, stride)
    for chunk in chunks:
        found = session.feed(chunk, None)
        if found:
            return found
    return session.finish(None)  # type: ignore[arg-type]


def regroup(chunks: list[str], stride: int) -> list[str]:
    """The same text, each delta holding what the session would queue up to a probe."""
    out: list[str] = []
    held: list[str] = []
    size = 0
    for chunk in chunks:
        held.append(chunk)
        size += len(chunk)
        if size >= stride:
            out.append("".join(held))
            held, size = [], 0
    if held:
        out.append("".join(held))
    return out


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(["ab", "cat ", "dog ", "x", "", "sun moon. ", "\n"]), max_size=120),
    st.integers(min_value=1, max_value=40),
)
def test_repetition_queue_and_direct_probe_agree(chunks: list[str], stride: int) -> None:
    queued = verdict(chunks, stride)
    direct = verdict(regroup(chunks, stride), stride)
    assert [(v.message, v.position) for v in queued or []] == [
        (v.message, v.position) for v in direct or []
    ]


def test_repetition_found_through_the_queue() -> None:
    found = verdict(list("the cat sat. " * 12), 16)  # one character per feed: all queued
    assert found
    assert "repeats itself" in found[0].message
