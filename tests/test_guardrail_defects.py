"""Regression tests for issue 8 items 4, 7, 11, 12 and 13 (guardrails and drift)."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import pytest
from l0_guardrails import pattern_rule, repetition_rule

import l0
from l0.drift import DetectorCheck, DetectorSpec, DriftConfig, DriftView
from l0.errors import GuardrailCheckError, GuardrailError
from l0.guardrails import GuardrailContext, GuardrailRule, RuleSpec, create_guardrail_engine
from l0.types import ErrorCategory, GuardrailViolation, State
from tests import drift_texts

FAST = l0.Retry(base_delay=0.0, max_delay=0.0)
TEXT = "One two three four five six seven eight nine ten eleven twelve."


class Counted:
    """A factory answering every attempt with ``text`` word by word, counting the attempts."""

    def __init__(self, text: str = TEXT) -> None:
        self.text = text
        self.calls = 0

    def __call__(self) -> AsyncIterator[str]:
        self.calls += 1
        return self._gen()

    async def _gen(self) -> AsyncIterator[str]:
        pieces = self.text.split(" ")
        for piece in [p + " " for p in pieces[:-1]] + [pieces[-1]]:
            yield piece


def says_five(ctx: GuardrailContext) -> list[GuardrailViolation]:
    # Built the way docs/guardrails.md shows: no severity, no recoverable.
    return [GuardrailViolation("five", "said five")] if "five" in ctx.content else []


# --- item 4: the rule's severity governs what its check returns -----------------------------


async def test_a_warning_rule_records_and_keeps_the_stream() -> None:
    factory = Counted()
    rule = GuardrailRule("five", check=says_five, streaming=True, severity="warning")
    result = l0.run(factory, guardrails=[rule], retry=FAST)
    assert await result.read() == TEXT
    assert factory.calls == 1
    assert result.state.violations
    assert {v.severity for v in result.state.violations} == {"warning"}


async def test_a_fatal_rule_stops_without_retrying() -> None:
    factory = Counted()
    rule = GuardrailRule("five", check=says_five, streaming=True, severity="fatal")
    with pytest.raises(l0.RetryExhaustedError, match="fatal guardrail violation") as info:
        await l0.run(factory, guardrails=[rule], retry=FAST).read()
    assert factory.calls == 1
    assert isinstance(info.value.last_error, GuardrailError)
    assert info.value.last_error.fatal


async def test_a_not_recoverable_rule_stops_without_retrying() -> None:
    factory = Counted()
    rule = GuardrailRule("five", check=says_five, streaming=True, recoverable=False)
    with pytest.raises(l0.RetryExhaustedError, match="fatal guardrail violation"):
        await l0.run(factory, guardrails=[rule], retry=FAST).read()
    assert factory.calls == 1


async def test_an_explicit_severity_in_the_check_wins_over_the_rule() -> None:
    def explicit(ctx: GuardrailContext) -> list[GuardrailViolation]:
        if "five" in ctx.content:
            return [GuardrailViolation("five", "said five", severity="warning")]
        return []

    factory = Counted()
    rule = GuardrailRule("five", check=explicit, streaming=True, severity="fatal")
    result = l0.run(factory, guardrails=[rule], retry=FAST)
    assert await result.read() == TEXT
    assert factory.calls == 1
    assert result.state.violations[0].severity == "warning"


def test_a_violation_compares_and_prints_as_before() -> None:
    plain = GuardrailViolation("r", "m")
    assert plain == GuardrailViolation("r", "m", "error", True, None)
    assert plain.severity == "error"
    assert plain.recoverable is True
    assert repr(plain) == (
        "GuardrailViolation(rule='r', message='m', severity='error', recoverable=True, "
        "position=None)"
    )


async def test_a_plugin_rule_takes_the_severity_given_to_guardrails_rule() -> None:
    def factory_of_rule(*, severity: Any = "error") -> GuardrailRule:
        return GuardrailRule("five", check=says_five, streaming=True, severity=severity)

    class Offers:
        @l0.hookimpl
        def l0_register_guardrails(self) -> Iterator[RuleSpec]:
            yield RuleSpec("five", factory_of_rule, "says five")

    pm = l0.build_plugin_manager()
    pm.register(Offers(), name="offers")
    factory = Counted()
    rule = l0.Guardrails.rule("five", severity="fatal", plugins=pm)
    with pytest.raises(l0.RetryExhaustedError, match="fatal guardrail violation"):
        await l0.run(factory, guardrails=[rule], retry=FAST, plugins=pm).read()
    assert factory.calls == 1
    factory = Counted()
    rule = l0.Guardrails.rule("five", severity="warning", plugins=pm)
    result = l0.run(factory, guardrails=[rule], retry=FAST, plugins=pm)
    assert await result.read() == TEXT
    assert factory.calls == 1


# --- item 7: a check that raises is an internal error, not a model failure -----------------


async def test_a_raising_check_is_raised_at_once_naming_the_rule() -> None:
    def buggy(ctx: GuardrailContext) -> list[GuardrailViolation]:
        raise RuntimeError("bug in my rule")

    factory = Counted()
    rule = GuardrailRule("mine", check=buggy, streaming=True)
    with pytest.raises(GuardrailCheckError, match="guardrail rule 'mine' raised") as info:
        await l0.run(factory, guardrails=[rule], retry=FAST).read()
    assert factory.calls == 1
    assert info.value.category is ErrorCategory.INTERNAL
    assert isinstance(info.value.__cause__, RuntimeError)
    assert "bug in my rule" in str(info.value)


async def test_a_raising_plugin_rule_names_its_plugin() -> None:
    class Session:
        def __init__(self, rule: GuardrailRule) -> None:
            self.rule = rule

        def feed(self, delta: str, state: State | None) -> None:
            raise KeyError("oops")

        def finish(self, context: GuardrailContext) -> None:
            return None

    class Offers:
        @l0.hookimpl
        def l0_register_guardrails(self) -> Iterator[RuleSpec]:
            yield RuleSpec(
                "crashy", lambda: GuardrailRule("crashy", session=Session, streaming=True)
            )

    pm = l0.build_plugin_manager()
    pm.register(Offers(), name="crashplug")
    factory = Counted()
    rule = l0.Guardrails.rule("crashy", plugins=pm)
    with pytest.raises(GuardrailCheckError, match=r"'crashy' .*plugin 'crashplug'"):
        await l0.run(factory, guardrails=[rule], retry=FAST, plugins=pm).read()
    assert factory.calls == 1


async def test_a_raising_final_check_is_raised_at_once() -> None:
    def final_only(ctx: GuardrailContext) -> list[GuardrailViolation]:
        raise RuntimeError("final bug")

    factory = Counted()
    rule = GuardrailRule("at_end", check=final_only, streaming=False)
    with pytest.raises(GuardrailCheckError, match="'at_end'"):
        await l0.run(factory, guardrails=[rule], retry=FAST, on_event=lambda e: None).read()
    assert factory.calls == 1


async def test_a_raising_drift_detector_is_raised_at_once_naming_it() -> None:
    class Broken:
        def __init__(self, options: Mapping[str, Any]) -> None:
            del options

        def start(self) -> DetectorCheck:
            def check(view: DriftView) -> float:
                raise RuntimeError("detector bug")

            return check

    class Offers:
        @l0.hookimpl
        def l0_register_drift_detectors(self) -> Iterator[DetectorSpec]:
            yield DetectorSpec("broken", Broken)

    pm = l0.build_plugin_manager()
    pm.register(Offers(), name="brokenplug")
    factory = Counted(" ".join(["word"] * 400))
    with pytest.raises(GuardrailCheckError, match=r"drift detector 'broken'.*'brokenplug'"):
        await l0.run(
            factory, drift=DriftConfig(detectors=["broken"]), retry=FAST, plugins=pm
        ).read()
    assert factory.calls == 1


# --- items 11 and 13: refusals ---------------------------------------------------------------

REFUSALS = [
    "I'm unable to help with that.",
    "I\u2019m unable to help with that.",
    "I'm not able to help with that request.",
    "I am unable to help with that.",
    "I cannot provide that information.",
    "I can't provide that information.",
    "I cannot actually perform that task for you.",
    "Sorry, I'm not able to assist with this.",
]
DRIFT_REFUSALS = [
    "I'm unable to help with that.",
    "I'm not able to help with that request.",
    "I cannot actually perform that task for you.",
    "I cannot provide that information.",
]


def _pattern_hits(text: str) -> list[GuardrailViolation]:
    engine = create_guardrail_engine([pattern_rule()])
    return list(engine.check(GuardrailContext(text, delta=text, completed=True)).violations)


@pytest.mark.parametrize("refusal", REFUSALS)
def test_the_pattern_rule_catches_the_refusal(refusal: str) -> None:
    assert _pattern_hits("Here is my reply. " + refusal)


@pytest.mark.parametrize("name", sorted(drift_texts.NORMAL))
def test_the_pattern_rule_leaves_ordinary_text_alone(name: str) -> None:
    assert _pattern_hits(drift_texts.NORMAL[name]) == []


def test_the_pattern_rule_leaves_near_misses_alone() -> None:
    text = (
        "The pump cannot provide enough pressure, so the valve is unable to close. "
        "You can't perform this task in one step, and I can help you with that later. "
        "I cannot stress enough how important the information in section two is. "
        "She said the team was not able to assist with the move."
    )
    assert _pattern_hits(text) == []


async def test_recommended_retries_a_contracted_refusal() -> None:
    calls = 0

    async def gen(text: str) -> AsyncIterator[str]:
        for piece in text.split(" "):
            yield piece + " "

    def factory() -> AsyncIterator[str]:
        nonlocal calls
        calls += 1
        return gen("I'm unable to help with that." if calls == 1 else "Sure, here it is.")

    result = l0.run(factory, guardrails=l0.Guardrails.recommended(), retry=FAST)
    assert (await result.read()).strip() == "Sure, here it is."
    assert calls == 2


def _drift_types(text: str) -> list[str]:
    from l0.drift import create_drift_engine

    engine = create_drift_engine(
        DriftConfig(detectors=["meta_commentary"]), l0.build_plugin_manager()
    )
    result = engine.validate(text)
    return [] if result is None else list(result.types)


@pytest.mark.parametrize("refusal", DRIFT_REFUSALS)
def test_meta_commentary_drift_catches_the_refusal(refusal: str) -> None:
    text = drift_texts.PROSE[:400] + " " + refusal
    assert _drift_types(text) == ["meta_commentary"]


@pytest.mark.parametrize("name", sorted(drift_texts.NORMAL))
def test_meta_commentary_leaves_ordinary_text_alone(name: str) -> None:
    assert _drift_types(drift_texts.NORMAL[name]) == []


# --- item 12: loops of short sentences --------------------------------------------------------


def _feed(rule: GuardrailRule, text: str, chunk: int = 4) -> int | None:
    """Feed ``text`` in chunks; return the character count when the rule first fired."""
    run = create_guardrail_engine([rule]).start(None)
    state = State()
    for start in range(0, len(text), chunk):
        piece = text[start : start + chunk]
        state._parts.append(piece)
        if run.feed(piece, state):
            return start + len(piece)
    return len(text) if run.finish(state) else None


INTRO = drift_texts.PROSE[:300] + " "


@pytest.mark.parametrize(
    "sentence",
    [
        "The answer is forty two. ",  # 25 characters
        "I am sorry about that. ",
        "Please try again later, thanks. ",  # 32
        "Yes, yes. ",  # 10: a few words
        "This sentence keeps on coming back here again and again, it never stops. ",  # 74
    ],
)
def test_a_loop_is_cut_within_the_documented_repeats(sentence: str) -> None:
    rule = repetition_rule()  # max_repeats=4
    fired = _feed(rule, INTRO + sentence * 30)
    assert fired is not None
    repeats = (fired - len(INTRO)) / len(sentence)
    # max_repeats periods, plus at most one look interval (the default stride) of delay
    stride = inspect.signature(repetition_rule).parameters["stride"].default
    assert repeats <= 4 + stride / len(sentence) + 1, repeats


@pytest.mark.parametrize("name", sorted(drift_texts.NORMAL))
def test_the_repetition_rule_leaves_ordinary_text_alone(name: str) -> None:
    assert _feed(repetition_rule(), drift_texts.NORMAL[name]) is None


@pytest.mark.parametrize(
    "text",
    [
        "-" * 400,
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
        "[" + ", ".join(["0"] * 200) + "]",
        "ha " * 100,
        "=" * 80 + "\n" + "Title\n" + "=" * 80 + "\n",
        "\n".join(f"{i}. item number {i}" for i in range(60)),
    ],
)
def test_the_repetition_rule_leaves_rulers_and_data_alone(text: str) -> None:
    assert _feed(repetition_rule(), text) is None


def test_repetition_options_are_checked() -> None:
    with pytest.raises(ValueError, match="min_period=2"):
        repetition_rule(min_period=2)


async def test_violation_events_carry_the_filled_fields_only() -> None:
    events: list[Any] = []
    rule = GuardrailRule("five", check=says_five, streaming=True, severity="warning")
    result = l0.run(Counted(), guardrails=[rule], retry=FAST, on_event=events.append)
    await result.read()
    await result.wait_callbacks()
    found = [
        e.data["violation"]
        for e in events
        if e.type.value == "GUARDRAIL_RULE_RESULT" and e.data["violation"]
    ]
    assert found
    assert found[0] == {
        "rule": "five",
        "message": "said five",
        "severity": "warning",
        "recoverable": True,
        "position": None,
    }
