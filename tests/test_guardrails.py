"""The guardrail engine in ``l0.guardrails``: registry, resolution, sessions, events, slow path."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import l0
from l0.config import reset_config_cache
from l0.errors import ConfigError, GuardrailError, L0PluginError
from l0.events import EVENT_DOCS
from l0.guardrails import (
    GuardrailContext,
    GuardrailEngine,
    GuardrailPreset,
    GuardrailResult,
    PresetSpec,
    RuleSpec,
    create_guardrail_engine,
    resolve_guardrails,
    run_async_guardrail_check,
    run_guardrail_check_async,
)
from l0.types import GuardrailViolation, State

FAST = l0.Retry(base_delay=0.0, max_delay=0.0)
GOOD = "A calm, useful answer about rivers and bridges."


def words(text: str) -> list[str]:
    pieces = text.split(" ")
    return [p + " " for p in pieces[:-1]] + [pieces[-1]]


class Scripted:
    """A stream factory that answers each attempt with the next text and counts what it sent."""

    def __init__(self, *texts: str | Sequence[str]) -> None:
        self.texts = list(texts)
        self.calls = 0
        self.sent: list[int] = []

    def __call__(self) -> AsyncIterator[str]:
        text = self.texts[min(self.calls, len(self.texts) - 1)]
        self.calls += 1
        tokens = words(text) if isinstance(text, str) else list(text)
        self.sent.append(0)
        return self._gen(tokens, len(self.sent) - 1)

    async def _gen(self, tokens: list[str], index: int) -> AsyncIterator[str]:
        for token in tokens:
            self.sent[index] += 1
            yield token


def rules_named(value: Any) -> list[str]:
    return [rule.name for rule in value]


# --- registry and presets ----------------------------------------------------------------------


def test_presets_resolve_through_the_registry() -> None:
    assert rules_named(l0.Guardrails.minimal()) == ["json", "zero_output"]
    assert rules_named(l0.Guardrails.recommended()) == [
        "json",
        "markdown",
        "zero_output",
        "pattern",
    ]
    assert rules_named(l0.Guardrails.strict()) == [
        "strict_json",
        "markdown",
        "zero_output",
        "pattern",
        "repetition",
        "stall",
    ]
    assert rules_named(l0.Guardrails.json_only()) == ["strict_json", "zero_output"]
    assert rules_named(l0.Guardrails.markdown_only()) == ["markdown", "zero_output"]
    assert rules_named(l0.Guardrails.none()) == []
    assert isinstance(l0.Guardrails.recommended(), GuardrailPreset)
    names = l0.Guardrails.names()
    assert {"json", "pattern", "repetition", "no_shouting"} <= set(names["rules"])
    assert {"recommended", "strict", "polite"} <= set(names["presets"])


def test_rule_factories_pass_options() -> None:
    assert l0.json_rule(severity="warning").severity == "warning"
    assert l0.Guardrails.json().name == "json"
    assert l0.pattern_rule([r"\bfoo\b"]).name == "pattern"
    assert l0.custom_pattern_rule([r"x"], name="no_x").name == "no_x"
    assert l0.Guardrails.rule("no_shouting", min_letters=2).name == "no_shouting"
    for factory in (l0.strict_json_rule, l0.markdown_rule, l0.zero_output_rule):
        assert factory().session is not None
    assert l0.stall_rule().streaming
    assert l0.repetition_rule().streaming
    with pytest.raises(ValueError, match=r"'repetition' .*rejected its options.*stride"):
        l0.repetition_rule(stride=0)
    with pytest.raises(ValueError, match="rejected its options"):
        l0.json_rule(colour="red")


def test_missing_plugin_says_what_to_install() -> None:
    pm = l0.build_plugin_manager(blocked=["guardrails"])
    for build in (
        lambda: l0.json_rule(plugins=pm),
        lambda: l0.pattern_rule(plugins=pm),
        lambda: l0.Guardrails.recommended(plugins=pm),
        lambda: l0.Guardrails.strict(plugins=pm),
        lambda: l0.Guardrails.preset("polite", plugins=pm),  # its rule 'pattern' is missing
    ):
        with pytest.raises(L0PluginError, match="pip install l0-guardrails"):
            build()
    with pytest.raises(L0PluginError, match="pip install l0-guardrails"):
        l0.run(Scripted(GOOD), guardrails="recommended", plugins=pm)
    assert l0.Guardrails.none().rules == ()
    # A third-party rule still works without the standard plugin.
    assert l0.Guardrails.rule("no_shouting", plugins=pm).name == "no_shouting"


def test_unknown_names_list_the_choices() -> None:
    with pytest.raises(
        ConfigError,
        match=r"guardrails='recomended': no such guardrail preset or rule; presets: "
        r".*recommended \(l0-guardrails 0\.1\.0\)",
    ):
        l0.run(Scripted(GOOD), guardrails="recomended")
    with pytest.raises(
        ConfigError, match=r"no such guardrail rule 'jsn'; choose one of: custom_pattern .*json"
    ):
        l0.Guardrails.rule("jsn")
    with pytest.raises(ConfigError, match="no such guardrail preset 'loose'"):
        l0.Guardrails.preset("loose")
    with pytest.raises(TypeError, match=r"guardrails=\[\.\.\., 42, \.\.\.\]"):
        l0.run(Scripted(GOOD), guardrails=[l0.json_rule(), 42])
    with pytest.raises(TypeError, match="expected a list of rules"):
        l0.run(Scripted(GOOD), guardrails=3.5)


def test_rule_validation() -> None:
    with pytest.raises(
        ValueError, match="severity='loud' is not allowed; choose one of warning, error, fatal"
    ):
        l0.GuardrailRule("r", check=lambda ctx: None, severity="loud")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"give check=\.\.\. or session=\.\.\."):
        l0.GuardrailRule("r")
    with pytest.raises(ValueError, match="non-empty name"):
        l0.GuardrailRule("", check=lambda ctx: None)
    with pytest.raises(TypeError, match="not callable"):
        l0.GuardrailRule("r", check="nope")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"severity for 'json' = 'meh'"):
        create_guardrail_engine([l0.json_rule()], severity={"json": "meh"})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="GuardrailRule objects"):
        create_guardrail_engine(["json"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"pattern '\[a-' is not a valid regular expression"):
        l0.custom_pattern_rule(["[a-"])


def test_a_plugin_offering_a_taken_name_fails_loudly() -> None:
    class Clash:
        @l0.hookimpl
        def l0_register_guardrails(self) -> Iterator[RuleSpec]:
            yield RuleSpec("json", l0.json_rule)

    pm = l0.build_plugin_manager()
    pm.register(Clash(), name="clash")
    with pytest.raises(L0PluginError, match="'json' is offered by both 'guardrails' and 'clash'"):
        l0.json_rule(plugins=pm)

    class Wrong:
        @l0.hookimpl
        def l0_register_guardrails(self) -> Iterator[Any]:
            yield "json"

    pm = l0.build_plugin_manager(entry_points=False)
    pm.register(Wrong(), name="wrong")
    with pytest.raises(L0PluginError, match=r"expected l0\.guardrails\.RuleSpec or PresetSpec"):
        l0.Guardrails.names(plugins=pm)


def test_in_process_registration_and_preset_by_names() -> None:
    class Mine:
        @l0.hookimpl
        def l0_register_guardrails(self) -> Iterator[RuleSpec | PresetSpec]:
            yield RuleSpec("no_x", lambda: l0.GuardrailRule("no_x", check=no_x, streaming=True))
            yield PresetSpec("mine", rules=("no_x", "json"))

    def no_x(ctx: GuardrailContext) -> list[GuardrailViolation]:
        return [GuardrailViolation("no_x", "x found")] if "x" in ctx.delta else []

    pm = l0.build_plugin_manager()
    pm.register(Mine(), name="mine")
    assert rules_named(l0.Guardrails.preset("mine", plugins=pm)) == ["no_x", "json"]


# --- in a session ------------------------------------------------------------------------------


async def test_error_violation_is_retried_and_recorded() -> None:
    factory = Scripted("As an AI language model, I think so.", GOOD)
    seen: list[GuardrailViolation] = []
    result = l0.run(
        factory, guardrails=l0.Guardrails.recommended(), retry=FAST, on_violation=seen.append
    )
    assert await result.read() == GOOD
    await result.wait_callbacks()
    assert factory.calls == 2
    assert [v.rule for v in result.state.violations] == ["pattern"]
    assert seen == result.state.violations
    assert result.state.violations[0].position == 0
    assert isinstance(result.errors[0].error, GuardrailError)
    assert result.errors[0].category is l0.ErrorCategory.CONTENT


async def test_error_violations_count_toward_attempts() -> None:
    factory = Scripted('{"a": [1}')
    result = l0.run(
        factory,
        guardrails=[l0.json_rule()],
        retry=l0.Retry(attempts=2, max_retries=9, base_delay=0.0),
    )
    with pytest.raises(l0.RetryExhaustedError, match=r"Retry.attempts=2 used up") as info:
        await result.read()
    assert factory.calls == 3
    assert isinstance(info.value.last_error, GuardrailError)
    assert len(result.state.violations) == 3


async def test_warning_is_recorded_only() -> None:
    factory = Scripted("As an AI, here is the answer.")
    result = l0.run(factory, guardrails=[l0.pattern_rule(severity="warning")], retry=FAST)
    assert await result.read() == "As an AI, here is the answer."
    assert factory.calls == 1
    assert [(v.rule, v.severity) for v in result.state.violations] == [("pattern", "warning")]


@pytest.mark.parametrize("rule_options", [{"severity": "fatal"}, {"recoverable": False}])
async def test_fatal_stops_without_retry(rule_options: dict[str, Any]) -> None:
    factory = Scripted('{"a": [1}', '{"a": [1]}')
    result = l0.run(factory, guardrails=[l0.json_rule(**rule_options)], retry=FAST)
    with pytest.raises(l0.RetryExhaustedError, match="fatal guardrail violation") as info:
        await result.read()
    assert factory.calls == 1
    error = info.value.last_error
    assert isinstance(error, GuardrailError)
    assert error.fatal


async def test_looping_stream_is_cut_off_early() -> None:
    loop = ["I will keep ", "saying this ", "same thing. "] * 2000
    factory = Scripted(loop, GOOD)
    result = l0.run(factory, guardrails=[l0.repetition_rule()], retry=FAST)
    assert await result.read() == GOOD
    assert factory.calls == 2
    assert factory.sent[0] < 100  # of 6000 tokens
    assert [v.rule for v in result.state.violations] == ["repetition"]


async def test_custom_rule_written_for_state_and_config_severity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def max_length_rule(limit: int) -> l0.GuardrailRule:
        def check(state: State) -> list[GuardrailViolation]:
            if len(state.content) > limit:
                return [GuardrailViolation("max_length", f"over {limit} chars")]
            return []

        return l0.GuardrailRule("max_length", check=check, streaming=True)  # type: ignore[arg-type]

    factory = Scripted("x " * 100, "short")
    result = l0.run(factory, guardrails=[max_length_rule(50)], retry=FAST)
    assert await result.read() == "short"
    assert [v.message for v in result.state.violations] == ["over 50 chars"]

    (tmp_path / "l0.toml").write_text('[guardrails]\nseverity = {max_length = "warning"}\n')
    monkeypatch.chdir(tmp_path)
    reset_config_cache()
    try:
        factory = Scripted("x " * 100, "short")
        result = l0.run(factory, guardrails=[max_length_rule(50)], retry=FAST)
        assert await result.read() == "x " * 100
        assert [v.severity for v in result.state.violations] == ["warning"]
    finally:
        reset_config_cache()


async def test_zero_output_rule_accepts_tool_calls_only() -> None:
    async def tools() -> AsyncIterator[l0.Event]:
        yield l0.Event(l0.EventType.TOOL_CALL, data={"id": "1", "name": "f", "arguments": "{}"})

    result = l0.run(tools, guardrails=[l0.zero_output_rule()], retry=FAST)
    assert await result.read() == ""
    assert result.state.violations == []
    # In a session the kernel's own zero-output check comes first, so whitespace-only output
    # costs max_retries only (the retry table), never Retry.attempts.
    factory = Scripted(["  ", "\n"], GOOD)
    result = l0.run(factory, guardrails=[l0.zero_output_rule()], retry=l0.Retry(attempts=0))
    assert await result.read() == GOOD
    assert result.state.violations == []
    assert result.state.network_retry_count == 1
    # The rule itself still judges text handed to the engine directly.
    engine = l0.guardrails.create_guardrail_engine([l0.zero_output_rule()])
    final = l0.guardrails.GuardrailContext("  \n", completed=True)
    assert [v.rule for v in engine.check(final).violations] == ["zero_output"]


async def test_json_continuation_from_a_checkpoint_is_not_a_false_positive() -> None:
    document = '{"items": [' + ", ".join(f'{{"n": {i}}}' for i in range(30)) + "]}"
    tokens = [document[i : i + 4] for i in range(0, len(document), 4)]
    calls = 0

    def factory(ctx: l0.AttemptContext) -> AsyncIterator[str]:
        nonlocal calls
        calls += 1

        async def gen() -> AsyncIterator[str]:
            if calls == 1:
                for token in tokens[:40]:
                    yield token
                raise ConnectionError("dropped")
            rest = document[len(ctx.checkpoint) :]
            for i in range(0, len(rest), 4):
                yield rest[i : i + 4]

        return gen()

    result = l0.run(
        factory,
        guardrails=l0.Guardrails.json_only(),
        retry=FAST,
        continue_from_last_good_token=True,
    )
    assert await result.read() == document
    assert result.state.resumed
    assert result.state.violations == []


async def test_events_have_the_documented_fields() -> None:
    events: list[l0.ObservabilityEvent] = []
    factory = Scripted('{"a": [1}', '{"a": [1]}')
    result = l0.run(
        factory,
        guardrails=[l0.json_rule(), l0.zero_output_rule()],
        retry=FAST,
        on_event=events.append,
    )
    assert await result.read() == '{"a": [1]}'
    await result.wait_callbacks()
    guard = [e for e in events if e.type.startswith("GUARDRAIL_")]
    kinds = {e.type for e in guard}
    assert kinds == {
        "GUARDRAIL_PHASE_START",
        "GUARDRAIL_RULE_START",
        "GUARDRAIL_RULE_RESULT",
        "GUARDRAIL_RULE_END",
        "GUARDRAIL_PHASE_END",
    }
    for event in guard:
        assert set(event.data) == set(EVENT_DOCS[event.type][1]), event.type
    failing = [e for e in guard if e.type == "GUARDRAIL_RULE_RESULT" and not e.data["passed"]]
    assert failing[0].data["rule_id"] == "json"
    assert failing[0].data["violation"]["message"] == "mis-nested JSON: expected ']', found '}'"
    starts = [e.data for e in guard if e.type == "GUARDRAIL_PHASE_START"]
    assert starts[0] == {"phase": "stream", "rule_count": 1}  # zero_output only checks at the end
    assert starts[-1] == {"phase": "post", "rule_count": 2}
    end = [e.data for e in guard if e.type == "GUARDRAIL_PHASE_END"][-1]
    assert end["passed"] is True
    assert end["violations"] == []


async def test_plugin_guardrail_check_hook_runs_per_check_not_per_token() -> None:
    calls: list[GuardrailContext] = []

    class Checker:
        @l0.hookimpl
        def l0_guardrail_check(self, context: GuardrailContext) -> list[GuardrailViolation]:
            calls.append(context)
            if "forbidden" in context.delta:
                return [GuardrailViolation("checker", "forbidden word")]
            return []

    pm = l0.build_plugin_manager(entry_points=False)
    pm.register(Checker(), name="checker")
    factory = Scripted("one two three four five six seven eight forbidden word", GOOD)
    result = l0.run(factory, retry=FAST, plugins=pm)  # no guardrails= at all
    assert await result.read() == GOOD
    assert [v.rule for v in result.state.violations] == ["checker"]
    assert len(calls) < 10  # 18 tokens streamed, checks every 5 tokens (+1 final)
    assert calls[-1].completed


# --- the deferred slow path --------------------------------------------------------------------


class FullScan:
    """A check rule that reads the whole content and flags the word BAD."""

    def __init__(self) -> None:
        self.lengths: list[int] = []

    def __call__(self, ctx: GuardrailContext) -> list[GuardrailViolation]:
        text = ctx.content
        self.lengths.append(len(text))
        return (
            [GuardrailViolation("full_scan", "BAD found", position=text.index("BAD"))]
            if "BAD" in text
            else []
        )


async def test_slow_path_defers_full_content_checks_off_the_stream() -> None:
    scan = FullScan()
    rule = l0.GuardrailRule("full_scan", check=scan, streaming=True)
    events: list[tuple[str, dict[str, Any]]] = []
    run = create_guardrail_engine([rule], fast_limit=1000).start(
        lambda kind, **fields: events.append((kind, fields))
    )
    state = State()

    def feed(text: str) -> list[GuardrailViolation] | None:
        state._parts.append(text)
        return run.feed(text, state)

    assert feed("a" * 500) is None  # short: inline
    assert scan.lengths == [500]
    assert feed("b" * 600 + "BAD") is None  # past fast_limit: scheduled, not run
    assert scan.lengths == [500]
    callback_kinds = [k for k, _ in events if k.startswith("GUARDRAIL_CALLBACK")]
    assert callback_kinds == []
    await asyncio.sleep(0)  # the loop runs the deferred check
    assert scan.lengths == [500, 1103]
    start, end = [f for k, f in events if k.startswith("GUARDRAIL_CALLBACK")]
    assert set(start) == set(EVENT_DOCS[l0.ObservabilityEventType.GUARDRAIL_CALLBACK_START][1])
    assert set(end) == set(EVENT_DOCS[l0.ObservabilityEventType.GUARDRAIL_CALLBACK_END][1])
    assert end["success"] is True
    assert start["callback_id"] == end["callback_id"]
    found = feed("c")  # results are applied at the next check
    assert found is not None
    assert [v.position for v in found] == [1100]
    # Snapshots thin out geometrically: the next full check waits for ~50% growth.
    feed("d" * 10)
    await asyncio.sleep(0)
    assert len(scan.lengths) == 2
    final = run.finish(state)
    assert final is None  # the same violation is not reported twice
    assert scan.lengths[-1] == len(state.content)


async def test_slow_path_does_not_block_tokens_in_a_session() -> None:
    scan = FullScan()
    rule = l0.GuardrailRule("full_scan", check=scan, streaming=True)
    text = ["word "] * 3000 + ["BAD "] + ["word "] * 200
    factory = Scripted(text, GOOD)
    result = l0.run(factory, guardrails=create_guardrail_engine([rule]), retry=FAST)
    assert await result.read() == GOOD
    assert [v.rule for v in result.state.violations] == ["full_scan"]
    # Past fast_limit (5120 chars) full scans thin out geometrically instead of running at each
    # of the ~500 remaining checks, so the total stays linear.
    late = [n for n in scan.lengths if n > 5120]
    assert 1 <= len(late) <= 5


async def test_deferred_check_that_raises_is_reraised_at_the_next_check() -> None:
    def broken(ctx: GuardrailContext) -> list[GuardrailViolation]:
        if len(ctx.content) > 10:
            raise RuntimeError("rule bug")
        return []

    run = create_guardrail_engine(
        [l0.GuardrailRule("b", check=broken, streaming=True)], fast_limit=5
    ).start()
    state = State()
    state._parts.append("0123456")
    run.feed("0123456", state)  # reads content (7 chars): now a full-content rule
    state._parts.append("789abc")
    assert run.feed("789abc", state) is None
    await asyncio.sleep(0)
    with pytest.raises(
        l0.errors.GuardrailCheckError, match="rule 'b' raised RuntimeError: rule bug"
    ):
        run.feed("d", state)


async def test_run_async_guardrail_check_fast_and_slow() -> None:
    engine = create_guardrail_engine([l0.json_rule(), l0.zero_output_rule()])
    small = GuardrailContext('{"a": 1}', delta="1}", completed=True)
    result = run_async_guardrail_check(engine, small, lambda r: None)
    assert isinstance(result, GuardrailResult)
    assert result.passed
    broken = GuardrailContext('{"a": [1}', delta="}", completed=False)
    result = run_async_guardrail_check(engine, broken, lambda r: None)
    assert result is not None
    assert result.should_retry
    assert not result.should_halt

    big = '{"a": [' + "1, " * 3000 + "1}"
    got: list[GuardrailResult] = []
    assert (
        run_async_guardrail_check(
            engine, GuardrailContext(big, delta="1, 1}", completed=True), got.append
        )
        is None
    )
    assert got == []
    await asyncio.sleep(0)
    assert len(got) == 1
    assert not got[0].passed

    awaited = await run_guardrail_check_async(engine, GuardrailContext(big, completed=True))
    assert [v.rule for v in awaited.violations] == ["json"]
    fatal = create_guardrail_engine([l0.json_rule(severity="fatal")])
    assert (await run_guardrail_check_async(fatal, broken)).should_halt


def test_validate_checks_streaming_rules_only() -> None:
    engine = create_guardrail_engine(l0.Guardrails.recommended())
    assert engine.validate('{"partial": [1, 2') == []  # a checkpoint may be incomplete
    assert [v.rule for v in engine.validate('{"a": [1}')] == ["json"]
    assert [v.rule for v in engine.validate("As an AI I cannot")] == ["pattern"]


# --- resolution from config --------------------------------------------------------------------


@pytest.fixture
def in_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, str], None]]:
    monkeypatch.chdir(tmp_path)

    def write(name: str, body: str) -> None:
        (tmp_path / name).write_text(body)
        reset_config_cache()

    yield write
    reset_config_cache()


async def test_config_preset_and_severity_override(in_dir: Callable[[str, str], None]) -> None:
    in_dir("l0.toml", '[guardrails]\npreset = "recommended"\nseverity = {pattern = "warning"}\n')
    factory = Scripted("As an AI, I can still answer this.")
    result = l0.run(factory, retry=FAST)
    assert await result.read() == "As an AI, I can still answer this."
    assert factory.calls == 1
    assert [(v.rule, v.severity) for v in result.state.violations] == [("pattern", "warning")]
    # The override applies to rules passed in code too, by name.
    result = l0.run(Scripted("As an AI, yes."), guardrails=[l0.pattern_rule()], retry=FAST)
    await result.read()
    assert [v.severity for v in result.state.violations] == ["warning"]


async def test_third_party_rule_from_pyproject(in_dir: Callable[[str, str], None]) -> None:
    in_dir("pyproject.toml", '[tool.l0.guardrails]\nrules = ["no_shouting"]\n')
    factory = Scripted("STOP SHOUTING AT ME", "fine, calmly then")
    result = l0.run(factory, retry=FAST)
    assert await result.read() == "fine, calmly then"
    assert factory.calls == 2
    assert [v.rule for v in result.state.violations] == ["no_shouting"]


async def test_third_party_preset_from_l0_toml(in_dir: Callable[[str, str], None]) -> None:
    in_dir("l0.toml", '[guardrails]\npreset = "polite"\n')
    factory = Scripted("I'm sorry, but I can't.", "Sure thing.")
    result = l0.run(factory, retry=FAST)
    assert await result.read() == "Sure thing."
    assert [v.rule for v in result.state.violations] == ["pattern"]


def test_bad_config_names_the_key_and_value(in_dir: Callable[[str, str], None]) -> None:
    in_dir("l0.toml", '[guardrails]\npreset = "strictest"\n')
    with pytest.raises(
        ConfigError,
        match=r"l0\.toml: guardrails\.preset = 'strictest': no such guardrail preset "
        r"'strictest'; choose one of: .*strict \(l0-guardrails",
    ):
        l0.run(Scripted(GOOD))
    in_dir("l0.toml", '[guardrails]\nrules = ["json", "nope"]\n')
    with pytest.raises(ConfigError, match=r"guardrails\.rules: no such guardrail rule 'nope'"):
        l0.run(Scripted(GOOD))
    in_dir("l0.toml", '[guardrails]\nrules = ["json"]\nseverity = {jsn = "warning"}\n')
    with pytest.raises(
        ConfigError, match=r"guardrails\.severity names 'jsn' = 'warning', which is no rule"
    ):
        l0.run(Scripted(GOOD))
    in_dir("l0.toml", '[guardrails]\nseverity = {json = "loud"}\n')
    with pytest.raises(
        ConfigError, match=r"guardrails\.severity = .*'json' = 'loud' is not one of those"
    ):
        l0.run(Scripted(GOOD))


def test_resolve_guardrails_shapes() -> None:
    pm = l0.default_plugin_manager()
    settings = l0.config.load_config()
    engine = resolve_guardrails(
        ["json", l0.Guardrails.markdown_only(), l0.pattern_rule()], pm, settings
    )
    assert isinstance(engine, GuardrailEngine)
    assert [r.name for r in engine.rules] == ["json", "markdown", "zero_output", "pattern"]
    assert resolve_guardrails(engine, pm, settings) is engine
    assert resolve_guardrails(False, pm, settings) is None
    assert resolve_guardrails(l0.Guardrails.none(), pm, settings) is None
    assert resolve_guardrails("none", pm, settings) is None
    strict = resolve_guardrails("strict", pm, settings)
    assert strict is not None
    assert len(strict.rules) == 6
    single = resolve_guardrails(l0.json_rule(), pm, settings)
    assert single is not None
    assert [r.name for r in single.rules] == ["json"]


async def test_reset_withdraws_exactly_what_the_consumer_was_shown() -> None:
    factory = Scripted(["Well, ", "as ", "an ", "AI, ", "I ", "would ", "say ", "no."], GOOD)
    shown = ""
    result = l0.run(factory, guardrails=[l0.pattern_rule()], retry=FAST)
    async for event in result:
        if event.is_token:
            shown += event.text or ""
        elif event.is_reset:
            assert shown.endswith(event.data["withdrawn"])
            shown = shown[: len(shown) - len(event.data["withdrawn"])]
    assert shown == GOOD
    assert [v.rule for v in result.state.violations] == ["pattern"]


@pytest.mark.parametrize(
    ("preset", "clean"),
    [
        ("minimal", '{"ok": true}'),
        ("recommended", "A plain answer with a fence:\n```\ncode\n```\n"),
        ("strict", "A varied answer about rivers, bridges and harbors."),
        ("json_only", '[1, {"two": [3]}]'),
        ("markdown_only", "# Title\n\nSome *markdown*."),
    ],
)
async def test_each_preset_passes_clean_output_and_catches_empty_output(
    preset: str, clean: str
) -> None:
    result = l0.run(Scripted([clean]), guardrails=preset, retry=FAST)
    assert await result.read() == clean
    assert result.state.violations == []
    factory = Scripted([" "], [clean])
    result = l0.run(factory, guardrails=preset, retry=FAST)
    assert await result.read() == clean
    # Empty output is the kernel's ZeroOutputError (a network-class retry), not a violation.
    assert result.state.violations == []
    assert result.state.network_retry_count == 1
    engine = l0.guardrails.create_guardrail_engine(l0.Guardrails.preset(preset))
    final = l0.guardrails.GuardrailContext(" ", completed=True)
    assert "zero_output" in [v.rule for v in engine.check(final).violations]


def test_with_rules_keeps_limits_and_severity_overrides() -> None:
    base = l0.guardrails.create_guardrail_engine(
        [l0.pattern_rule()], fast_limit=64, severity={"pattern": "warning", "extra": "fatal"}
    )
    extra = l0.GuardrailRule("extra", check=lambda ctx: [l0.GuardrailViolation("extra", "x")])
    engine = base.with_rules(extra)
    assert [r.name for r in engine.rules] == ["pattern", "extra"]
    assert engine.fast_limit == 64
    assert [r.severity for r in engine.rules] == ["warning", "error"]
    assert [r.name for r in base.rules] == ["pattern"]


async def test_config_passes_rule_options(in_dir: Callable[[str, str], None]) -> None:
    # A word list for custom_pattern, and an option of a rule inside a preset.
    in_dir(
        "l0.toml",
        '[guardrails]\npreset = "strict"\nrules = ["custom_pattern"]\n'
        '[guardrails.options.custom_pattern]\npatterns = ["\\\\bconfidential\\\\b"]\n'
        'message = "leaked word"\n'
        "[guardrails.options.repetition]\nmax_repeats = 9\n",
    )
    factory = Scripted("This is confidential material.", GOOD)
    result = l0.run(factory, retry=FAST)
    assert await result.read() == GOOD
    assert [v.rule for v in result.state.violations] == ["custom_pattern"]
    assert "leaked word" in result.state.violations[0].message
    # max_repeats=9 reached the preset's repetition rule: 6 repeats are not a loop any more.
    looped = "Say the same thing again. " * 6
    assert await l0.run(Scripted(looped), retry=FAST).read() == looped


def test_bad_rule_options_in_config_name_the_key(in_dir: Callable[[str, str], None]) -> None:
    in_dir("l0.toml", "[guardrails.options.nope]\nx = 1\n")
    with pytest.raises(ConfigError, match=r"guardrails\.options names 'nope'"):
        l0.run(Scripted(GOOD))
    in_dir(
        "l0.toml",
        '[guardrails]\nrules = ["repetition"]\n[guardrails.options.repetition]\nwindow = 1\n',
    )
    with pytest.raises(ValueError, match=r"guardrails\.rules: .*'repetition'.*window=1"):
        l0.run(Scripted(GOOD))
    in_dir("l0.toml", "[guardrails]\noptions = 3\n")
    with pytest.raises(ConfigError, match=r"guardrails\.options = 3 is invalid"):
        l0.run(Scripted(GOOD))
