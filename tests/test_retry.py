"""l0.retry: backoff formulas, Retry validation, the retry table's accounting, Retry-After."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import l0
from l0.errors import (
    ConfigError,
    DriftError,
    GuardrailError,
    ZeroOutputError,
    get_retry_after,
    parse_retry_after,
)
from l0.events import ObservabilityEventType
from l0.plugins import L0PluginManager
from l0.retry import DEFAULT_MAX_RETRY_AFTER, BackoffStrategy, Retry, compute_backoff
from tests.runtime_helpers import TEXT, TOKENS, Fault, Script, StatusError

S = BackoffStrategy


@pytest.fixture
def pm() -> L0PluginManager:
    return l0.build_plugin_manager(entry_points=False)


# --- the five formulas ------------------------------------------------------------------------


def test_there_are_exactly_five_strategies() -> None:
    assert {s.value for s in S} == {
        "exponential",
        "linear",
        "fixed",
        "full-jitter",
        "fixed-jitter",
    }
    assert Retry().strategy is S.FIXED_JITTER


def test_fixed() -> None:
    policy = Retry(base_delay=0.5, max_delay=10, strategy=S.FIXED)
    rng = random.Random(1)
    assert [compute_backoff(i, policy, rng) for i in range(5)] == [0.5] * 5


def test_linear() -> None:
    policy = Retry(base_delay=0.5, max_delay=10, strategy=S.LINEAR)
    rng = random.Random(1)
    assert [compute_backoff(i, policy, rng) for i in range(4)] == [0.5, 1.0, 1.5, 2.0]


def test_exponential() -> None:
    policy = Retry(base_delay=0.25, max_delay=100, strategy=S.EXPONENTIAL)
    rng = random.Random(1)
    assert [compute_backoff(i, policy, rng) for i in range(5)] == [0.25, 0.5, 1.0, 2.0, 4.0]


def test_fixed_jitter_is_half_base_plus_seeded_random_half() -> None:
    policy = Retry(base_delay=2.0, max_delay=10, strategy=S.FIXED_JITTER)
    rng = random.Random(42)
    reference = random.Random(42)
    delays = [compute_backoff(i, policy, rng) for i in range(20)]
    assert delays == [1.0 + reference.uniform(0.0, 1.0) for _ in range(20)]
    assert all(d is not None and 1.0 <= d <= 2.0 for d in delays)
    assert len(set(delays)) > 1


def test_full_jitter_is_seeded_random_up_to_exponential() -> None:
    policy = Retry(base_delay=0.5, max_delay=1000, strategy=S.FULL_JITTER)
    rng = random.Random(7)
    reference = random.Random(7)
    delays = [compute_backoff(i, policy, rng) for i in range(8)]
    assert delays == [reference.uniform(0.0, 0.5 * 2**i) for i in range(8)]
    assert all(d is not None and 0 <= d <= 0.5 * 2**i for i, d in enumerate(delays))


@pytest.mark.parametrize("strategy", list(S))
def test_every_formula_is_capped_by_max_delay(strategy: BackoffStrategy) -> None:
    policy = Retry(base_delay=8.0, max_delay=3.0, strategy=strategy)
    rng = random.Random(3)
    delays = [compute_backoff(i, policy, rng) for i in range(70)]  # 2**70 must not overflow
    assert all(d is not None and 0 <= d <= 3.0 for d in delays)
    if strategy is not S.FULL_JITTER:
        assert delays[-1] == 3.0


@pytest.mark.parametrize("strategy", list(S))
def test_same_seed_same_delays(strategy: BackoffStrategy) -> None:
    policy = Retry(base_delay=1.0, strategy=strategy)
    first = [compute_backoff(i, policy, random.Random(5)) for i in range(6)]
    again = [compute_backoff(i, policy, random.Random(5)) for i in range(6)]
    assert first == again


def test_unknown_strategy_name_is_left_to_plugins() -> None:
    policy = Retry(strategy="decorrelated")
    assert policy.strategy == "decorrelated"
    assert compute_backoff(0, policy, random.Random()) is None
    assert Retry(strategy="linear").strategy is S.LINEAR


def _delays(events: list[Any]) -> list[float]:
    return [e["delay_ms"] for e in events if e.type is ObservabilityEventType.RETRY_ATTEMPT]


async def test_session_uses_the_seeded_formula(pm: L0PluginManager) -> None:
    policy = Retry(base_delay=0.004, max_delay=0.01, strategy=S.FULL_JITTER)
    script = Script([Fault("raise", 1, ConnectionResetError("x"))] * 3)
    events: list[Any] = []
    result = l0.run(script.factory, plugins=pm, retry=policy, seed=11, on_event=events.append)
    assert await result.read() == TEXT
    await result.wait_callbacks()
    reference = random.Random(11)
    expected = [compute_backoff(i, policy, reference) for i in range(3)]
    assert _delays(events) == [d * 1000 for d in expected if d is not None]


async def test_retry_seed_is_used_when_run_has_none(pm: L0PluginManager) -> None:
    policy = Retry(base_delay=0.004, strategy=S.FIXED_JITTER, seed=3)
    script = Script([Fault("raise", 1, ConnectionResetError("x"))] * 2)
    events: list[Any] = []
    result = l0.run(script.factory, plugins=pm, retry=policy, on_event=events.append)
    await result.read()
    await result.wait_callbacks()
    reference = random.Random(3)
    assert _delays(events) == [
        (compute_backoff(i, policy, reference) or 0.0) * 1000 for i in range(2)
    ]


async def test_strategy_nobody_computes_fails_clearly(pm: L0PluginManager) -> None:
    script = Script([Fault("raise", 1, ConnectionResetError("x"))])
    with pytest.raises(ConfigError, match="decorrelated"):
        await l0.run(script.factory, plugins=pm, retry=Retry(strategy="decorrelated")).read()


# --- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"attempts": "3"}, TypeError, r"attempts='3'"),
        ({"attempts": True}, TypeError, r"attempts=True"),
        ({"attempts": 2.0}, TypeError, r"attempts=2\.0"),
        ({"attempts": -1}, ValueError, r"attempts=-1.*>= 0"),
        ({"max_retries": None}, TypeError, r"max_retries=None"),
        ({"max_retries": -3}, ValueError, r"max_retries=-3"),
        ({"base_delay": "1s"}, TypeError, r"base_delay='1s'"),
        ({"base_delay": float("nan")}, ValueError, r"base_delay=nan"),
        ({"base_delay": -0.5}, ValueError, r"base_delay=-0\.5"),
        ({"max_delay": -1}, ValueError, r"max_delay=-1"),
        ({"max_retry_after": -1}, ValueError, r"max_retry_after=-1"),
        ({"max_retry_after": [1]}, TypeError, r"max_retry_after=\[1\]"),
        ({"seed": "abc"}, TypeError, r"seed='abc'"),
        ({"seed": 1.5}, TypeError, r"seed=1\.5"),
        ({"seed": False}, TypeError, r"seed=False"),
        ({"strategy": 3}, TypeError, r"strategy=3.*choose one of.*fixed-jitter"),
        ({"strategy": None}, TypeError, r"strategy=None"),
        ({"strategy": "  "}, ValueError, r"strategy=''.*choose one of.*exponential"),
    ],
)
def test_validation_names_the_parameter(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match) as info:
        Retry(**kwargs)
    assert type(info.value) is error  # exactly TypeError/ValueError, not a subclass surprise


def test_valid_edges_and_copies() -> None:
    policy = Retry(attempts=0, max_retries=0, base_delay=0, max_delay=0, max_retry_after=0)
    assert policy.max_retries == 0
    assert Retry(base_delay=1).base_delay == 1
    changed = Retry().with_changes(max_retries=9)
    assert changed.max_retries == 9
    assert changed.attempts == Retry().attempts
    with pytest.raises(ValueError, match="max_retries=-1"):
        Retry().with_changes(max_retries=-1)
    assert set(Retry.field_names()) >= {"attempts", "max_retries", "base_delay", "strategy"}
    assert Retry().max_retry_after == DEFAULT_MAX_RETRY_AFTER
    assert Retry() == Retry(3, 6, 1.0, 10.0, S.FIXED_JITTER)


# --- accounting, as the spec's retry table says ---------------------------------------------


def zero() -> Fault:
    return Fault("zero")


def status(code: int) -> Fault:
    return Fault("status", status=code)


def boom(error: BaseException, at: int = 1) -> Fault:
    return Fault("raise", at, error)


async def run_script(
    pm: L0PluginManager,
    faults: list[Fault],
    *,
    attempts: int,
    max_retries: int,
    limits: l0.Timeout | None = None,
) -> tuple[Script, l0.Result, BaseException | None]:
    script = Script(faults)
    result = l0.run(
        script.factory,
        plugins=pm,
        retry=Retry(attempts=attempts, max_retries=max_retries, base_delay=0, max_delay=0),
        timeout=limits,
    )
    try:
        await result.read()
    except Exception as exc:
        return script, result, exc
    return script, result, None


FREE_FAULTS: dict[str, Callable[[], Fault]] = {
    "network disconnect": lambda: boom(ConnectionResetError("reset by peer")),
    "zero output": zero,
    "429 rate limit": lambda: status(429),
    "503 server error": lambda: status(503),
}


@pytest.mark.parametrize("kind", list(FREE_FAULTS))
async def test_free_retries_use_max_retries_only(kind: str, pm: L0PluginManager) -> None:
    # attempts=0: a retry that counted toward attempts could not happen at all.
    faults = [FREE_FAULTS[kind]() for _ in range(3)]
    script, result, error = await run_script(pm, faults, attempts=0, max_retries=3)
    assert error is None
    assert script.calls == 4
    assert result.state.network_retry_count == 3
    assert result.state.model_retry_count == 0

    script, _, error = await run_script(
        pm, [FREE_FAULTS[kind]() for _ in range(10)], attempts=0, max_retries=3
    )
    assert isinstance(error, l0.RetryExhaustedError)
    assert script.calls == 4


async def test_timeouts_use_max_retries_only(pm: L0PluginManager) -> None:
    faults = [Fault("stall", 2)] * 2
    script, result, error = await run_script(
        pm, faults, attempts=0, max_retries=2, limits=l0.Timeout(inter_token=0.05)
    )
    assert error is None
    assert script.calls == 3
    assert result.state.network_retry_count == 2
    assert script.closed == 3


CONTENT_ERRORS: dict[str, Callable[[], Exception]] = {
    "guardrail violation": lambda: GuardrailError("rule broken"),
    "drift detected": lambda: DriftError("drifting"),
    "model error": lambda: RuntimeError("garbage"),
}


@pytest.mark.parametrize("kind", list(CONTENT_ERRORS))
async def test_content_retries_use_attempts_too(kind: str, pm: L0PluginManager) -> None:
    make = CONTENT_ERRORS[kind]
    script, result, error = await run_script(
        pm, [boom(make()) for _ in range(2)], attempts=2, max_retries=6
    )
    assert error is None
    assert script.calls == 3
    assert result.state.model_retry_count == 2
    assert result.state.network_retry_count == 0

    script, _, error = await run_script(
        pm, [boom(make()) for _ in range(10)], attempts=2, max_retries=6
    )
    assert isinstance(error, l0.RetryExhaustedError)
    assert script.calls == 3
    assert "Retry.attempts=2 used up" in str(error)

    # ... and they count toward max_retries as well.
    script, _, error = await run_script(
        pm, [boom(make()) for _ in range(10)], attempts=5, max_retries=2
    )
    assert isinstance(error, l0.RetryExhaustedError)
    assert script.calls == 3
    assert "Retry.max_retries=2 used up" in str(error)


async def test_free_and_counted_retries_share_max_retries(pm: L0PluginManager) -> None:
    faults = [
        boom(ConnectionResetError("x")),
        zero(),
        boom(GuardrailError("rule")),
        status(503),
        boom(DriftError("drift")),
    ]
    script, result, error = await run_script(pm, faults, attempts=2, max_retries=5)
    assert error is None
    assert script.calls == 6
    assert (result.state.network_retry_count, result.state.model_retry_count) == (3, 2)
    assert result.state.total_retries == 5

    script, _, error = await run_script(pm, faults, attempts=2, max_retries=4)
    assert isinstance(error, l0.RetryExhaustedError)
    assert script.calls == 5


@pytest.mark.parametrize("code", [401, 403])
async def test_auth_errors_never_retry(code: int, pm: L0PluginManager) -> None:
    script, result, error = await run_script(pm, [status(code)] * 3, attempts=3, max_retries=6)
    assert isinstance(error, StatusError)
    assert script.calls == 1
    assert result.state.total_retries == 0


async def test_fatal_guardrail_violation_never_retries(pm: L0PluginManager) -> None:
    fatal = GuardrailError("unsafe", fatal=True)
    script, _, error = await run_script(pm, [boom(fatal)] * 3, attempts=3, max_retries=6)
    assert isinstance(error, l0.RetryExhaustedError)
    assert error.last_error is fatal
    assert script.calls == 1


async def test_zero_budget_means_one_call(pm: L0PluginManager) -> None:
    script, _, error = await run_script(pm, [zero()] * 3, attempts=0, max_retries=0)
    assert isinstance(error, l0.RetryExhaustedError)
    assert isinstance(error.last_error, ZeroOutputError)
    assert script.calls == 1


async def test_retry_events_report_what_counts(pm: L0PluginManager) -> None:
    script = Script([boom(ConnectionResetError("x")), boom(GuardrailError("rule"))])
    events: list[Any] = []
    result = l0.run(script.factory, plugins=pm, retry=Retry(base_delay=0), on_event=events.append)
    assert await result.read() == TEXT
    await result.wait_callbacks()
    attempts = [e for e in events if e.type is ObservabilityEventType.RETRY_ATTEMPT]
    assert [(e["counts_toward_limit"], e["is_network"]) for e in attempts] == [
        (False, True),
        (True, False),
    ]


# --- Retry-After ----------------------------------------------------------------------------

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("3", 3.0),
        (" 2 ", 2.0),
        ("1.5", 1.5),
        ("0", 0.0),
        (b"4", 4.0),
        (7, 7.0),
        (0.25, 0.25),
        ("-5", 0.0),  # a negative wait means "now", never a negative sleep
        (-1, 0.0),
        (email.utils.formatdate(NOW + 90, usegmt=True), 90.0),
        (email.utils.formatdate(NOW - 90, usegmt=True), 0.0),  # a date in the past
        ("garbage", None),
        ("soon-ish", None),
        ("", None),
        ("   ", None),
        ("nan", None),
        ("inf", None),
        (float("nan"), None),
        (None, None),
        (True, None),
        (["3"], None),
    ],
)
def test_parse_retry_after(value: object, seconds: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


def test_parse_retry_after_date_uses_the_wall_clock() -> None:
    later = email.utils.formatdate(time.time() + 120, usegmt=True)
    parsed = parse_retry_after(later)
    assert parsed is not None
    assert 110 <= parsed <= 121


class Response:
    def __init__(self, headers: Any) -> None:
        self.headers = headers


@pytest.mark.parametrize(
    ("error", "seconds"),
    [
        (StatusError(429, {"retry-after": "3"}), 3.0),
        (StatusError(429, {"Retry-After": "3"}), 3.0),
        (StatusError(429, {"retry-after-ms": "1500"}), 1.5),
        (StatusError(429, {"retry-after-ms": "250", "retry-after": "9"}), 0.25),
        (StatusError(429, {"retry-after-ms": "junk", "retry-after": "9"}), 9.0),
        (StatusError(503, {"retry-after": "whenever"}), None),
        (StatusError(503), None),
        (StatusError(503, {"retry-after": "-2"}), 0.0),
    ],
)
def test_get_retry_after_from_headers(error: BaseException, seconds: float | None) -> None:
    assert get_retry_after(error) == seconds


def test_get_retry_after_other_places() -> None:
    class WithResponse(Exception):
        response = Response({"retry-after": "4"})

    class WithAttribute(Exception):
        retry_after = 2.5

    class WithPairs(Exception):
        headers = (("Content-Type", "json"), ("retry-after", "6"))

    assert get_retry_after(WithResponse()) == 4.0
    assert get_retry_after(WithAttribute()) == 2.5
    assert get_retry_after(WithPairs()) == 6.0
    assert get_retry_after(ValueError()) is None


async def test_retry_after_raises_the_backoff_not_lowers_it(pm: L0PluginManager) -> None:
    script = Script([boom(StatusError(429, {"retry-after": "0.05"}), at=0)])
    events: list[Any] = []
    policy = Retry(base_delay=0.02, max_delay=1, strategy=S.FIXED)
    result = l0.run(script.factory, plugins=pm, retry=policy, on_event=events.append)
    assert await result.read() == TEXT
    await result.wait_callbacks()
    assert _delays(events) == [50.0]

    script = Script([boom(StatusError(429, {"retry-after": "0"}), at=0)])
    events.clear()
    result = l0.run(script.factory, plugins=pm, retry=policy, on_event=events.append)
    assert await result.read() == TEXT
    await result.wait_callbacks()
    assert _delays(events) == [20.0]


async def test_retry_after_at_the_cap_is_waited_beyond_it_gives_up(pm: L0PluginManager) -> None:
    policy = Retry(base_delay=0, max_retry_after=0.1)
    at_cap = Script([boom(StatusError(503, {"retry-after": "0.1"}), at=0)])
    start = time.monotonic()
    assert await l0.run(at_cap.factory, plugins=pm, retry=policy).read() == TEXT
    assert time.monotonic() - start >= 0.1
    assert at_cap.calls == 2

    beyond = Script([boom(StatusError(503, {"retry-after": "0.2"}), at=0)])
    start = time.monotonic()
    with pytest.raises(l0.RetryExhaustedError, match=r"max_retry_after=0\.1"):
        await l0.run(beyond.factory, plugins=pm, retry=policy).read()
    assert time.monotonic() - start < 0.1
    assert beyond.calls == 1


async def tokens(items: list[str]) -> AsyncIterator[str]:
    for item in items:
        yield item


async def test_no_retry_needed_makes_no_delay(pm: L0PluginManager) -> None:
    events: list[Any] = []
    result = l0.run(lambda: tokens(TOKENS), plugins=pm, on_event=events.append)
    assert await result.read() == TEXT
    await result.wait_callbacks()
    assert _delays(events) == []


async def test_retry_counts_cover_the_whole_session_across_fallbacks(pm: L0PluginManager) -> None:
    # Regression: the counters were reset when a fallback started, so a session that retried
    # the primary twice and then fell back reported "0 network + 0 model retries".
    primary = Script([boom(ConnectionResetError("x")), status(503), status(503)])
    backup = Script([boom(GuardrailError("rule")), Fault()])
    result = l0.run(
        primary.factory,
        fallbacks=[backup.factory],
        plugins=pm,
        retry=Retry(attempts=3, max_retries=2, base_delay=0, max_delay=0),
    )
    assert await result.read() == TEXT
    assert (primary.calls, backup.calls) == (3, 2)
    state = result.state
    assert state.fallback_index == 1
    assert (state.network_retry_count, state.model_retry_count) == (2, 1)
    assert state.total_retries == 3
