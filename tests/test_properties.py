"""Property tests: no token lost or doubled under any fault schedule; seeded runs repeat."""

from __future__ import annotations

import asyncio
from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

import l0
from l0.events import ObservabilityEvent
from tests.runtime_helpers import TEXT, TOKENS, Fault, Script, StatusError

N = len(TOKENS)

faults = st.one_of(
    st.just(Fault("ok")),
    st.builds(
        lambda k: Fault("raise", k, ConnectionResetError("connection reset")),
        st.integers(0, N - 1),
    ),
    st.builds(lambda k: Fault("raise", k, RuntimeError("model error")), st.integers(0, N - 1)),
    st.builds(lambda k: Fault("stall", k), st.integers(0, N - 1)),
    st.just(Fault("zero")),
    st.sampled_from([Fault("status", status=s) for s in (429, 500, 503, 401)]),
)


def expected_outcome(schedule: list[Fault], attempts: int, max_retries: int) -> tuple[str, int]:
    """What the retry table says happens: ("ok" | "exhausted" | "fatal", number of calls)."""
    model = network = 0
    index = 0
    while True:
        fault = schedule[index] if index < len(schedule) else Fault("ok")
        calls = index + 1
        if fault.kind == "ok":
            return "ok", calls
        if fault.kind == "status" and fault.status == 401:
            return "fatal", calls
        counted = fault.kind == "raise" and isinstance(fault.error, RuntimeError)
        if counted and model >= attempts:
            return "exhausted", calls
        if model + network >= max_retries:
            return "exhausted", calls
        if counted:
            model += 1
        else:
            network += 1
        index += 1


async def run_schedule(
    schedule: list[Fault], attempts: int, max_retries: int, *, iterate: bool
) -> tuple[str, int, str]:
    pm = l0.build_plugin_manager(entry_points=False)
    script = Script(list(schedule))
    result = l0.run(
        script.factory,
        plugins=pm,
        retry=l0.Retry(attempts=attempts, max_retries=max_retries, base_delay=0),
        timeout=l0.Timeout(initial_token=0.5, inter_token=0.02),
    )
    try:
        if iterate:
            shown = ""
            async for event in result:
                if event.is_token:
                    shown += event.text or ""
                elif event.is_reset:
                    assert shown.endswith(event.data["withdrawn"])
                    shown = shown[: len(shown) - len(event.data["withdrawn"])]
            assert shown == result.state.content
            text = shown
        else:
            text = await result.read()
    except l0.RetryExhaustedError:
        return "exhausted", script.calls, ""
    except StatusError:
        return "fatal", script.calls, ""
    finally:
        await result.wait_callbacks()
    assert script.closed == script.calls
    return "ok", script.calls, text


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
@given(
    schedule=st.lists(faults, max_size=8),
    attempts=st.integers(0, 3),
    max_retries=st.integers(0, 6),
    iterate=st.booleans(),
)
def test_any_fault_schedule_keeps_text_exact(
    schedule: list[Fault], attempts: int, max_retries: int, iterate: bool
) -> None:
    outcome, calls, text = asyncio.run(
        run_schedule(schedule, attempts, max_retries, iterate=iterate)
    )
    assert (outcome, calls) == expected_outcome(schedule, attempts, max_retries)
    if outcome == "ok":
        assert text == TEXT


async def traced_run(seed: int) -> list[Any]:
    pm = l0.build_plugin_manager(entry_points=False)
    trace: list[Any] = []
    script = Script(
        [
            Fault("raise", 2, ConnectionResetError("reset")),
            Fault("status", status=503),
            Fault("raise", 1, RuntimeError("model")),
        ]
    )

    def on_event(event: ObservabilityEvent) -> None:
        timing = ("_ms", "_ts")
        data = {k: v for k, v in event.data.items() if not k.endswith(timing) or k == "delay_ms"}
        trace.append(("event", event.type.value, sorted(data.items(), key=lambda kv: kv[0])))

    result = l0.run(
        script.factory,
        plugins=pm,
        seed=seed,
        fallbacks=[lambda: Script([]).factory()],
        retry=l0.Retry(max_retries=2, base_delay=0.01, max_delay=0.05),
        on_event=on_event,
        on_start=lambda *a: trace.append(("start", a)),
        on_retry=lambda *a: trace.append(("retry", a)),
        on_error=lambda e, r, f: trace.append(("error", repr(e), r, f)),
        on_fallback=lambda *a: trace.append(("fallback", a)),
        on_complete=lambda s: trace.append(("complete", s.content)),
    )
    await result.read()
    await result.wait_callbacks()
    return trace


def test_same_seed_same_delays_and_callback_order() -> None:
    first = asyncio.run(traced_run(1234))
    second = asyncio.run(traced_run(1234))
    other = asyncio.run(traced_run(99))
    assert first == second
    delays = [dict(item[2])["delay_ms"] for item in first if item[:2] == ("event", "RETRY_ATTEMPT")]
    assert len(delays) == 2
    assert all(5.0 <= d <= 10.0 for d in delays)
    other_delays = [
        dict(item[2])["delay_ms"] for item in other if item[:2] == ("event", "RETRY_ATTEMPT")
    ]
    assert delays != other_delays
