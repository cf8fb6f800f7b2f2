"""Scenarios whose event/callback sequences are pinned by golden files in tests/golden/."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import l0
from l0.events import ObservabilityEvent
from tests.runtime_helpers import TOKENS, Fault, Script, StatusError

# Fields worth pinning per event type: stable across runs (no times, ids or reprs of objects).
KEY_FIELDS = {
    "RETRY_ATTEMPT": ("attempt", "reason", "counts_toward_limit"),
    "FALLBACK_START": ("from_index", "to_index"),
    "TIMEOUT_TRIGGERED": ("timeout_type",),
    "NETWORK_ERROR": ("will_retry",),
    "RESUME_START": ("checkpoint", "token_count"),
    "RESUME_END": ("success", "overlap_chars"),
    "TOOL_REQUESTED": ("tool_name", "arguments"),
    "TOOL_COMPLETED": ("status",),
    "SESSION_SUMMARY": ("status", "token_count", "retry_count", "fallback_depth"),
    "SESSION_END": ("status",),
    "ABORT_REQUESTED": ("source",),
    "RETRY_GIVE_UP": ("attempts", "category"),
    "GUARDRAIL_PHASE_END": ("phase", "passed"),
    "DRIFT_CHECK_RESULT": ("detected",),
    "CIRCUIT_REJECTED": ("key", "action"),
    "RETRY_AFTER_HELD": ("key", "action"),
    "RETRY_BUDGET_REFUSED": ("key", "retries", "requests"),
    "CIRCUIT_OPENED": ("key",),
    "CIRCUIT_CLOSED": ("key",),
    "GROUP_START": ("kind", "task_count", "mode"),
    "GROUP_TASK_COMPLETE": ("index",),
    "GROUP_TASK_FAILED": ("index",),
    "GROUP_TASK_CANCELLED": ("index",),
    "GROUP_WINNER": ("index",),
    "GROUP_PROGRESS": ("done", "failed", "total"),
    "CONSENSUS_REACHED": ("strategy", "agreement", "outputs"),
    "CONSENSUS_FAILED": ("strategy", "agreement", "outputs"),
    "GROUP_END": ("status",),
    "FAILURE_ROUTED": ("failure", "decision"),
    "CONTINUATION_STRATEGY": ("strategy", "rejected"),
    "LENGTH_CONTINUATION": ("continuation", "token_count"),
    "HEDGE_START": ("attempt", "fallback_index"),
    "HEDGE_END": ("winner", "winner_attempt", "loser_attempt"),
}

FAST = l0.Retry(base_delay=0.0, max_delay=0.0)
QUICK = l0.Timeout(initial_token=0.1, inter_token=0.1)


class Trace:
    """One ordered list of observability events and callbacks."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.events: list[ObservabilityEvent] = []

    def on_event(self, event: ObservabilityEvent) -> None:
        self.events.append(event)
        keys = KEY_FIELDS.get(event.type.value, ())
        detail = ",".join(f"{k}={event.get(k)!r}" for k in keys)
        self.items.append(f"{event.type.value}({detail})" if detail else event.type.value)

    def callbacks(self) -> dict[str, Any]:
        def make(name: str) -> Callable[..., None]:
            def record(*args: Any) -> None:
                shown: list[Any] = [a for a in args if isinstance(a, bool | int | str)]
                if name == "on_error":
                    shown = [type(args[0]).__name__, *args[1:]]
                if name == "on_complete":
                    shown = [args[0].content]
                if name == "on_drift":
                    shown = [sorted(args[0])]
                if name == "on_violation":
                    shown = [args[0].rule, args[0].severity]
                if name == "on_timeout":
                    # elapsed_ms is wall-clock; timeouts fire within 50 ms, so round to 100 ms.
                    shown = [args[0], round(args[1], -2)]
                self.items.append(f"{name}({', '.join(map(repr, shown))})")

            return record

        names = ["on_start", "on_complete", "on_error", "on_retry", "on_fallback", "on_timeout"]
        names += ["on_abort", "on_tool_call", "on_resume", "on_checkpoint", "on_violation"]
        names += ["on_drift"]
        return {"on_event": self.on_event, **{n: make(n) for n in names}}


async def tokens(items: list[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


async def _run(trace: Trace, factory: Any, **kwargs: Any) -> l0.Result:
    # Only the first-party guardrail and drift plugins: third-party ones in the environment
    # must not change the pinned sequences.
    pm = l0.build_plugin_manager(allow=["guardrails", "drift"])
    result = l0.run(factory, plugins=pm, **{"retry": FAST, **kwargs}, **trace.callbacks())
    with contextlib.suppress(l0.RetryExhaustedError, l0.AbortedError):
        await result.read()
    await result.wait_callbacks()
    return result


async def success(trace: Trace) -> None:
    await _run(trace, lambda: tokens(TOKENS))


async def network_retry(trace: Trace) -> None:
    script = Script([Fault("raise", 2, ConnectionResetError("connection reset"))])
    await _run(trace, script.factory)


async def fallback(trace: Trace) -> None:
    primary = Script([Fault("status", status=503)] * 5)
    await _run(
        trace,
        primary.factory,
        fallbacks=[lambda: tokens(TOKENS)],
        retry=l0.Retry(max_retries=1, base_delay=0),
    )


async def initial_timeout(trace: Trace) -> None:
    script = Script([Fault("stall", 0)])
    await _run(trace, script.factory, timeout=QUICK)


async def inter_timeout(trace: Trace) -> None:
    script = Script([Fault("stall", 3)])
    await _run(trace, script.factory, timeout=QUICK)


async def abort(trace: Trace) -> None:
    pm = l0.build_plugin_manager(entry_points=False)
    script = Script([Fault("stall", 2)])
    result = l0.run(script.factory, plugins=pm, **trace.callbacks())
    task = asyncio.create_task(result.read())
    await asyncio.sleep(0.05)
    result.abort()
    with contextlib.suppress(l0.AbortedError):
        await task
    await result.wait_callbacks()


async def resume(trace: Trace) -> None:
    async def stream(ctx: l0.AttemptContext) -> AsyncIterator[str]:
        if ctx.attempt == 1:
            for token in TOKENS[:4]:
                yield token
            raise ConnectionResetError("connection reset")
        for token in [" fox", *TOKENS[4:]]:
            yield token

    await _run(
        trace,
        stream,
        continue_from_last_good_token=True,
        check_intervals={"checkpoint": 2},
    )


async def tool_call(trace: Trace) -> None:
    calls = [
        l0.Event(
            l0.EventType.TOOL_CALL,
            data={"id": "c1", "name": "weather", "arguments": '{"city": "Oslo"}'},
        ),
        l0.Event(l0.EventType.TOOL_CALL, data={"id": "c2", "name": "clock", "arguments": {}}),
    ]
    result = await _run(trace, lambda: tokens(calls))
    result.tool_started("c1", "weather")
    result.tool_finished("c1", result={"temp": 3})
    result.tool_started("c2", "clock")
    result.tool_finished("c2", error=TimeoutError("clock unreachable"))
    await result.wait_callbacks()


async def give_up(trace: Trace) -> None:
    script = Script([Fault("raise", 0, RuntimeError("model error"))] * 5)
    await _run(trace, script.factory, retry=l0.Retry(attempts=1, base_delay=0))


LOOP = ["I will say this again. "] * 60


async def drift_retry(trace: Trace) -> None:
    # The first answer loops; the second is too short for drift to judge (DRIFT_CHECK_SKIPPED).
    answers = [LOOP, TOKENS]
    await _run(trace, lambda: tokens(answers.pop(0)), drift=True, retry=FAST)


async def guardrail_retry(trace: Trace) -> None:
    answers = [["As ", "an ", "AI ", "language ", "model, ", "I ", "cannot."], TOKENS]
    # A check every 5 tokens: the 7-token answer is cut off by a check while it streams.
    await _run(
        trace,
        lambda: tokens(answers.pop(0)),
        guardrails=[l0.pattern_rule()],
        check_intervals={"guardrails": 5},
    )


LONG = ["Rivers carry silt to the sea. "] * 300  # 9000 characters: past the inline limit


async def guardrail_deferred(trace: Trace) -> None:
    # A check that reads the whole content runs off the stream's path once the output is long
    # (GUARDRAIL_CALLBACK_*); it finds nothing here.
    def words(ctx: l0.GuardrailContext) -> list[l0.GuardrailViolation]:
        return [] if len(ctx.content.split()) < 5000 else [l0.GuardrailViolation("words", "long")]

    async def slow_tokens() -> AsyncIterator[str]:
        for token in LONG:
            await asyncio.sleep(0)  # a real provider yields to the loop between chunks
            yield token

    rule = l0.GuardrailRule("words", check=words, streaming=True)
    await _run(trace, slow_tokens, guardrails=[rule], check_intervals={"guardrails": 50})


async def provider_health(trace: Trace) -> None:
    """Shared Retry-After, retry budget, and a circuit that opens, rejects, probes and closes."""
    pm = l0.build_plugin_manager(allow=["guardrails", "drift"])
    health = l0.Health(
        failure_threshold=1, open_seconds=1.0, retry_budget=0, retry_budget_min=0, contact_wait=0
    )

    async def rate_limited() -> AsyncIterator[str]:
        for _ in ():
            yield ""
        raise StatusError(429, {"retry-after": "30"})

    async def down() -> AsyncIterator[str]:
        for _ in ():
            yield ""
        raise ConnectionResetError("connection reset")

    async def session(factory: Callable[[], AsyncIterator[str]], key: str) -> None:
        result = l0.run(
            factory,
            fallbacks=[lambda: tokens(TOKENS)],
            provider=[key, None],
            health=health,
            plugins=pm,
            retry=FAST,
            **trace.callbacks(),
        )
        await result.read()
        await result.wait_callbacks()

    await session(rate_limited, "busy")  # 429: the retry budget refuses the retry
    await session(rate_limited, "busy")  # held back by the shared Retry-After
    await session(down, "down")  # an outage opens the circuit
    await session(down, "down")  # the open circuit rejects the attempt
    await asyncio.sleep(1.1)
    await session(lambda: tokens(TOKENS), "down")  # the probe closes it


# --- many sessions: coroutine tasks, so only the group's own events are traced -------------


async def _value(value: Any, delay: float = 0.0, fail: bool = False) -> Any:
    await asyncio.sleep(delay)
    if fail:
        raise RuntimeError("task failed")
    return value


async def _group(trace: Trace, call: Callable[[Any], Coroutine[Any, Any, Any]]) -> None:
    async def on_event(event: ObservabilityEvent) -> None:
        trace.on_event(event)

    with contextlib.suppress(l0.ConsensusError):
        await call(on_event)
    # Group events reach on_event off the caller's path; wait for the last one.
    async with asyncio.timeout(10):
        while not trace.items or not trace.items[-1].startswith("GROUP_END"):
            await asyncio.sleep(0.005)


async def race(trace: Trace) -> None:
    await _group(
        trace,
        lambda on_event: l0.race(
            [
                lambda: _value("x", fail=True),
                lambda: _value("won", 0.05),
                lambda: _value("slow", 30.0),
            ],
            on_event=on_event,
        ),
    )


async def parallel(trace: Trace) -> None:
    await _group(
        trace,
        lambda on_event: l0.parallel(
            [lambda: _value(1), lambda: _value(2, fail=True), lambda: _value(3)],
            concurrency=1,
            on_event=on_event,
        ),
    )


async def consensus(trace: Trace) -> None:
    tasks = [lambda: _value("yes"), lambda: _value("Yes."), lambda: _value("no", 0.01)]
    await _group(trace, lambda on_event: l0.consensus(tasks, on_event=on_event))
    await _group(
        trace, lambda on_event: l0.consensus(tasks, strategy="unanimous", on_event=on_event)
    )


async def stall_to_fallback(trace: Trace) -> None:
    # Retry.fallback_on: a stall goes to the fallback at once (FAILURE_ROUTED).
    primary = Script([Fault("stall", 3)] * 3)
    await _run(trace, primary.factory, fallbacks=[lambda: tokens(TOKENS)], timeout=QUICK)


async def continue_on_length(trace: Trace) -> None:
    # A cut answer continued through a strategy the factory reports (CONTINUATION_STRATEGY).
    async def stream(ctx: l0.AttemptContext) -> AsyncIterator[Any]:
        if ctx.report_continuation is not None:
            ctx.report_continuation("prefill", ())
        part = TOKENS[:4] if ctx.attempt == 1 else TOKENS[4:]
        for token in part:
            yield token
        reason = "length" if ctx.attempt == 1 else "stop"
        yield l0.Event(l0.EventType.COMPLETE, data={"finish_reason": reason})

    await _run(trace, stream, continue_on_length=1)


async def hedge(trace: Trace) -> None:
    # The primary's first token is late; the fallback, started as a hedge, wins.
    primary = Script([Fault("stall", 0)])
    await _run(
        trace,
        primary.factory,
        fallbacks=[lambda: tokens(TOKENS)],
        hedge_after=0.05,
        timeout=l0.Timeout(initial_token=5, inter_token=5),
    )


SCENARIOS: dict[str, Callable[[Trace], Coroutine[Any, Any, None]]] = {
    "success": success,
    "network_retry": network_retry,
    "fallback": fallback,
    "initial_timeout": initial_timeout,
    "inter_timeout": inter_timeout,
    "abort": abort,
    "resume": resume,
    "tool_call": tool_call,
    "give_up": give_up,
    "drift_retry": drift_retry,
    "guardrail_retry": guardrail_retry,
    "guardrail_deferred": guardrail_deferred,
    "provider_health": provider_health,
    "race": race,
    "parallel": parallel,
    "consensus": consensus,
    "stall_to_fallback": stall_to_fallback,
    "continue_on_length": continue_on_length,
    "hedge": hedge,
}


def run_scenario(name: str) -> Trace:
    trace = Trace()
    asyncio.run(SCENARIOS[name](trace))
    return trace
