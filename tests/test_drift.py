"""Drift detection: the kernel engine (l0.drift) with the detectors of l0-drift."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

import l0
import l0.config
from l0.drift import (
    DetectorCheck,
    DetectorSpec,
    DriftConfig,
    DriftEngine,
    DriftResult,
    DriftView,
    create_drift_engine,
    resolve_drift,
)
from l0.errors import ConfigError, DriftError, L0PluginError
from tests.drift_texts import CODE, JSON, JSON_COMPACT, MARKDOWN, NORMAL, PROSE, TONE_SHIFT

FAST = l0.Retry(attempts=2, base_delay=0.0, max_delay=0.0)


@pytest.fixture
def pm() -> l0.L0PluginManager:
    return l0.build_plugin_manager()


@pytest.fixture(autouse=True)
def _no_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)  # no l0.toml / pyproject of the checkout in force
    for name in list(__import__("os").environ):
        if name.startswith("L0_DRIFT"):
            monkeypatch.delenv(name)
    l0.config.reset_config_cache()
    yield
    l0.config.reset_config_cache()


def scan(engine: DriftEngine, text: str, chunk: int = 37) -> list[DriftResult]:
    """Feed ``text`` as the session would and collect every verdict."""
    run = engine.start()
    out = []
    for i in range(0, len(text), chunk):
        result = run.feed(text[i : i + chunk])
        if result is not None:
            out.append(result)
    final = run.finish(text)
    if final is not None:
        out.append(final)
    return out


def detected(engine: DriftEngine, text: str) -> set[str]:
    return {t for r in scan(engine, text) for t in r.types}


DRIFTING = {
    "repetition": PROSE[:700] + "I apologize for the confusion. " * 30,
    "repetition_sentences": PROSE[:900]
    + "".join(
        f"Step {i} is queued. The system is now processing your request. Please wait. "
        for i in range(12)
    ),
    "meta_commentary": PROSE[:900]
    + " As an AI language model, I cannot browse the internet. "
    + PROSE[900:1300],
    "tone_shift": TONE_SHIFT,
    "format_drift": JSON[:1200] + "\n  ]\n}\nHope this helps! Let me know if you need more users.",
    "format_drift_md": "\n".join(f"- item {i}: set option {i} in the service" for i in range(25))
    + "\n"
    + PROSE,
    "entropy_collapse": PROSE[:1100] + "!" * 600,
}


@pytest.mark.parametrize(("case", "text"), DRIFTING.items(), ids=list(DRIFTING))
def test_each_detector_detects_its_drift(pm: l0.L0PluginManager, case: str, text: str) -> None:
    name = case.removesuffix("_sentences").removesuffix("_md")
    engine = create_drift_engine(DriftConfig(detectors=[name]), pm)
    results = scan(engine, text)
    hits = [r for r in results if r.detected]
    assert hits, f"{name} missed: {[r.details for r in results]}"
    assert hits[0].types == [name]
    assert hits[0].confidence >= 0.6


@pytest.mark.parametrize(("kind", "text"), NORMAL.items(), ids=list(NORMAL))
@pytest.mark.parametrize("chunk", [1, 7, 40, 600])
def test_no_false_positive_on_ordinary_output(
    pm: l0.L0PluginManager, kind: str, text: str, chunk: int
) -> None:
    engine = create_drift_engine(DriftConfig(), pm)
    results = scan(engine, text, chunk)
    assert results, "at least the final check runs"
    assert not any(r.detected for r in results), [r.details for r in results if r.detected]


@pytest.mark.parametrize("text", [PROSE * 6, CODE * 4, JSON_COMPACT, MARKDOWN * 3])
def test_long_ordinary_output_stays_quiet(pm: l0.L0PluginManager, text: str) -> None:
    # Repeating a long document keeps every window locally ordinary: loops need a short period.
    engine = create_drift_engine(DriftConfig(detectors=["meta_commentary", "format_drift"]), pm)
    assert detected(engine, text) == set()


def test_json_split_anywhere_is_tracked_exactly(pm: l0.L0PluginManager) -> None:
    engine = create_drift_engine(DriftConfig(detectors=["format_drift"]), pm)
    tricky = (
        '{"a": "quote \\" and \\\\", "b": [true, false, null, -1.5e3], "nested": {"c": "x\\\\"},'
        ' "d": "{[not structure]}"}'
    )
    assert len(tricky) > 64
    for cut in range(1, len(tricky)):
        run = engine.start()
        run._stride = 1  # check after every feed, so every split point is exercised
        verdicts = [run.feed(tricky[:cut]), run.feed(tricky[cut:]), run.finish(tricky)]
        assert any(v is not None for v in verdicts)
        assert not any(v is not None and v.detected for v in verdicts), (cut, verdicts)
    run = engine.start()
    run.feed(tricky + " Sure, here is an explanation of the fields.")
    final = run.finish("")
    assert final is not None
    assert final.types == ["format_drift"]


def test_sliding_window_forgets_old_text(pm: l0.L0PluginManager) -> None:
    engine = create_drift_engine(DriftConfig(detectors=["meta_commentary"], window=64), pm)
    text = "As an AI language model, I would say so. " + PROSE * 2
    results = scan(engine, text)
    assert results[0].detected
    # The phrase left the window long before the end: later checks are clean.
    assert not results[-1].detected


class _Counting:
    """A detector that records how many characters each check hands it."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int, int]] = []

    def start(self) -> DetectorCheck:
        def check(view: DriftView) -> float:
            self.seen.append((len(view.window), len(view.new), len(view.baseline)))
            return 0.0

        return check


def test_cost_per_check_is_bounded_by_the_window(pm: l0.L0PluginManager) -> None:
    counting = _Counting()

    class Plugin:
        @l0.hookimpl
        def l0_register_drift_detectors(self) -> Iterator[DetectorSpec]:
            yield DetectorSpec("counting", lambda _opts: counting)

    pm.register(Plugin(), name="counting")
    engine = create_drift_engine(DriftConfig(detectors=["counting"], window=64), pm)
    run = engine.start()
    token = "word "
    for _ in range(20_000):  # 200k tokens fed ten at a time, as the session does
        run.feed(token * 10)
    run.finish("")
    size = engine.window_chars
    assert len(counting.seen) >= 1_000_000 // (engine.stride + 50) - 1
    assert all(w <= size and n <= engine.stride + 50 and b <= size for w, n, b in counting.seen)
    # Everything handed over adds up to the text exactly once: nothing is rescanned.
    assert sum(n for _, n, _ in counting.seen) == 1_000_000


def test_drift_result_and_config_are_exported() -> None:
    assert l0.DriftConfig is DriftConfig
    assert l0.DriftResult is DriftResult


# --- through l0.run ------------------------------------------------------------------------


def tokens_of(text: str) -> list[str]:
    return [text[i : i + 4] for i in range(0, len(text), 4)]


def stream_of(texts: list[str]) -> tuple[list[int], Any]:
    calls: list[int] = []

    async def gen(text: str) -> AsyncIterator[str]:
        for token in tokens_of(text):
            yield token
            await asyncio.sleep(0)

    def factory() -> AsyncIterator[str]:
        calls.append(1)
        return gen(texts[min(len(calls) - 1, len(texts) - 1)])

    return calls, factory


LOOPING = PROSE[:600] + "I apologize for the confusion. " * 30


async def test_drift_retries_and_the_good_answer_wins() -> None:
    calls, factory = stream_of([LOOPING, PROSE])
    drifts: list[tuple[list[str], float | None]] = []
    result = l0.run(factory, drift=True, retry=FAST, on_drift=lambda t, c: drifts.append((t, c)))
    assert await result.read() == PROSE
    await result.wait_callbacks()
    assert len(calls) == 2
    assert result.state.drift_detected
    assert result.state.model_retry_count == 1  # counted toward Retry.attempts
    assert drifts
    types, confidence = drifts[0]
    assert "repetition" in types
    assert confidence is not None
    assert confidence >= 0.6


async def test_drift_consumes_attempts_then_gives_up() -> None:
    calls, factory = stream_of([LOOPING])
    result = l0.run(factory, drift=True, retry=l0.Retry(attempts=2, base_delay=0, max_delay=0))
    with pytest.raises(l0.RetryExhaustedError) as info:
        await result.read()
    assert len(calls) == 3
    assert isinstance(info.value.last_error, DriftError)


async def test_drift_check_events_have_the_documented_fields() -> None:
    events: list[l0.ObservabilityEvent] = []
    _calls, factory = stream_of([PROSE])
    result = l0.run(factory, drift=DriftConfig(window=64), on_event=events.append)
    assert await result.read() == PROSE
    await result.wait_callbacks()
    kinds = [e.type for e in events if e.type.startswith("DRIFT_")]
    assert kinds[:3] == ["DRIFT_CHECK_START", "DRIFT_CHECK_RESULT", "DRIFT_CHECK_END"]
    fields = {
        "DRIFT_CHECK_START": {"checkpoint", "token_count", "strategy"},
        "DRIFT_CHECK_RESULT": {"detected", "score", "metrics", "threshold"},
        "DRIFT_CHECK_END": {"duration_ms"},
    }
    for event in events:
        if event.type in fields:
            assert set(event.data) == fields[event.type]
    verdicts = [e.data for e in events if e.type == "DRIFT_CHECK_RESULT"]
    assert all(v["detected"] is False and v["threshold"] == 0.6 for v in verdicts)
    assert set(verdicts[0]["metrics"]) == {
        "entropy_collapse",
        "format_drift",
        "meta_commentary",
        "repetition",
        "tone_shift",
    }


async def test_short_output_reports_a_skipped_check() -> None:
    events: list[l0.ObservabilityEvent] = []
    _calls, factory = stream_of(["Yes, it is."])
    result = l0.run(factory, drift=True, on_event=events.append)
    assert await result.read() == "Yes, it is."
    await result.wait_callbacks()
    skipped = [e for e in events if e.type == "DRIFT_CHECK_SKIPPED"]
    assert len(skipped) == 1
    assert set(skipped[0].data) == {"reason"}
    assert "too little text" in skipped[0].data["reason"]


async def test_checkpoint_with_drift_is_not_continued() -> None:
    calls, factory = stream_of([LOOPING, PROSE])
    resumes: list[str] = []
    result = l0.run(
        factory,
        drift=True,
        retry=FAST,
        continue_from_last_good_token=True,
        on_resume=lambda cp, _n: resumes.append(cp),
    )
    assert await result.read() == PROSE
    await result.wait_callbacks()
    assert len(calls) == 2
    assert all("I apologize for the confusion. I apologize" not in cp for cp in resumes)


def test_validate_judges_a_whole_text(pm: l0.L0PluginManager) -> None:
    engine = create_drift_engine(DriftConfig(), pm)
    bad = engine.validate(LOOPING)
    assert bad is not None
    assert bad.detected
    good = engine.validate(PROSE * 5)
    assert good is not None
    assert not good.detected


# --- selecting and configuring -------------------------------------------------------------


def test_drift_true_uses_every_registered_detector(pm: l0.L0PluginManager) -> None:
    engine = resolve_drift(True, pm, l0.config.load_config())
    assert engine is not None
    assert set(engine.names) == {
        "repetition",
        "meta_commentary",
        "tone_shift",
        "format_drift",
        "entropy_collapse",
    }
    assert engine.window_tokens == 256
    assert engine.threshold == 0.6


def test_drift_config_argument_wins_over_file(tmp_path: Path, pm: l0.L0PluginManager) -> None:
    (tmp_path / "l0.toml").write_text(
        '[drift]\nenabled = true\nwindow = 64\nthreshold = 0.9\ndetectors = ["repetition"]\n'
    )
    l0.config.reset_config_cache()
    settings = l0.config.load_config()
    from_file = resolve_drift(None, pm, settings)
    assert from_file is not None
    assert (from_file.names, from_file.window_tokens, from_file.threshold) == (
        ("repetition",),
        64,
        0.9,
    )
    explicit = resolve_drift(DriftConfig(threshold=0.5, detectors=["tone_shift"]), pm, settings)
    assert explicit is not None
    assert (explicit.names, explicit.window_tokens, explicit.threshold) == (
        ("tone_shift",),
        64,
        0.5,
    )
    assert resolve_drift(False, pm, settings) is None


async def test_config_file_turns_drift_on_for_run(tmp_path: Path) -> None:
    (tmp_path / "l0.toml").write_text("[drift]\nenabled = true\n")
    l0.config.reset_config_cache()
    calls, factory = stream_of([LOOPING, PROSE])
    drifts: list[list[str]] = []
    result = l0.run(factory, retry=FAST, on_drift=lambda t, _c: drifts.append(t))
    assert await result.read() == PROSE
    await result.wait_callbacks()
    assert len(calls) == 2
    assert drifts


def test_config_without_enabled_leaves_drift_off(tmp_path: Path, pm: l0.L0PluginManager) -> None:
    (tmp_path / "l0.toml").write_text("[drift]\nwindow = 64\n")
    l0.config.reset_config_cache()
    assert resolve_drift(None, pm, l0.config.load_config()) is None


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[drift]\nenabled = true\ndetectors = ["loops"]\n', "'loops' is not registered"),
        (
            "[drift]\nenabled = true\nwindow = 4\n",
            "drift.window = 4 is invalid; expected an integer >= 16",
        ),
        ("[drift]\nenabled = true\nthreshold = 0\n", "threshold must be a number > 0"),
    ],
)
def test_bad_config_names_source_key_and_choices(
    tmp_path: Path, pm: l0.L0PluginManager, toml: str, message: str
) -> None:
    (tmp_path / "l0.toml").write_text(toml)
    l0.config.reset_config_cache()
    with pytest.raises(ConfigError) as info:
        resolve_drift(None, pm, l0.config.load_config())
    text = str(info.value)
    assert message in text
    assert "l0.toml" in text


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"window": 8}, ValueError, "DriftConfig(window=8): window must be an int >= 16"),
        ({"window": True}, ValueError, "window must be an int"),
        ({"threshold": 1.5}, ValueError, "DriftConfig(threshold=1.5): threshold must be"),
        ({"threshold": float("nan")}, ValueError, "threshold must be a number > 0 and <= 1"),
        ({"detectors": "repetition"}, TypeError, "expected a list of detector names"),
        ({"detectors": []}, ValueError, "name at least one detector"),
        ({"options": {"repetition": 3}}, TypeError, "dict of detector name -> dict"),
    ],
)
def test_bad_drift_config(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error) as info:
        DriftConfig(**kwargs)
    assert message in str(info.value)


def test_unknown_detector_or_option_lists_the_choices(pm: l0.L0PluginManager) -> None:
    with pytest.raises(ValueError, match="'loops' is not registered; choose one of: ") as info:
        create_drift_engine(DriftConfig(detectors=["loops"]), pm)
    assert "repetition (drift)" in str(info.value)
    with pytest.raises(ValueError, match="unknown option 'period'; repetition takes: "):
        create_drift_engine(DriftConfig(options={"repetition": {"period": 3}}), pm)
    with pytest.raises(ValueError, match=r"option min_repeats=-1: expected a number > 0"):
        create_drift_engine(DriftConfig(options={"repetition": {"min_repeats": -1}}), pm)


def test_bad_drift_argument_to_run() -> None:
    with pytest.raises(TypeError, match="drift='yes': expected True, False, None"):
        l0.run(stream_of(["x"])[1], drift="yes")


def test_missing_plugin_says_what_to_install() -> None:
    pm = l0.build_plugin_manager()
    pm.disable("drift")
    with pytest.raises(L0PluginError, match="pip install l0-drift"):
        l0.run(stream_of(["x"])[1], drift=True, plugins=pm)


def test_two_plugins_offering_one_name_fail(pm: l0.L0PluginManager) -> None:
    class Clash:
        @l0.hookimpl
        def l0_register_drift_detectors(self) -> Iterator[DetectorSpec]:
            yield DetectorSpec("repetition", lambda _o: _Counting())

    pm.register(Clash(), name="clash")
    with pytest.raises(L0PluginError, match="'repetition' is offered by both plugin"):
        create_drift_engine(DriftConfig(), pm)


def test_detector_options_reach_the_detector(pm: l0.L0PluginManager) -> None:
    received: list[Mapping[str, Any]] = []

    def factory(options: Mapping[str, Any]) -> _Counting:
        received.append(options)
        return _Counting()

    class Plugin:
        @l0.hookimpl
        def l0_register_drift_detectors(self) -> Iterator[DetectorSpec]:
            yield DetectorSpec("mine", factory, "test detector")

    pm.register(Plugin(), name="mine")
    create_drift_engine(DriftConfig(detectors=["mine"], options={"mine": {"k": 1}}), pm)
    assert received == [{"k": 1}]
