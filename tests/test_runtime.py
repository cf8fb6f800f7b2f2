"""l0.run: streaming, retries, fallbacks, zero output, errors, abort, bad input."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

import l0
from l0.errors import AbortedError, InvalidStreamError, ZeroOutputError
from l0.plugins import L0PluginManager
from tests.runtime_helpers import TEXT, TOKENS, Fault, Script, StatusError, collect

FAST = l0.Retry(base_delay=0.0, max_delay=0.0)


@pytest.fixture
def pm() -> L0PluginManager:
    return l0.build_plugin_manager(entry_points=False)


async def tokens(items: list[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


# --- the happy path ---------------------------------------------------------------------------


async def test_read_returns_the_exact_text(pm: L0PluginManager) -> None:
    result = await l0.run(lambda: tokens(TOKENS), plugins=pm)
    assert await result.read() == TEXT
    assert result.state.content == TEXT
    assert result.state.token_count == len(TOKENS)
    assert result.state.completed
    assert result.state.attempt == 1
    assert result.state.duration is not None
    assert result.state.time_to_first_token is not None
    assert result.raw() == TOKENS


async def test_iteration_yields_tokens_then_complete(pm: L0PluginManager) -> None:
    events = await collect(l0.run(lambda: tokens(TOKENS), plugins=pm))
    assert [e.text for e in events if e.is_token] == TOKENS
    assert events[-1].is_complete
    assert sum(e.is_complete for e in events) == 1


async def test_event_items_and_tool_calls_pass_through(pm: L0PluginManager) -> None:
    calls: list[tuple[str, str, dict[str, Any]]] = []
    items = [
        "a",
        l0.Event(l0.EventType.TOKEN, "b"),
        l0.Event(
            l0.EventType.TOOL_CALL,
            data={"id": "c1", "name": "lookup", "arguments": '{"q": "x"}'},
        ),
        l0.Event(l0.EventType.COMPLETE, usage={"output_tokens": 2}),
    ]
    result = l0.run(
        lambda: tokens(items),
        plugins=pm,
        on_tool_call=lambda name, call_id, args: calls.append((name, call_id, args)),
    )
    events = await collect(result)
    await result.wait_callbacks()
    assert [e.type for e in events] == ["token", "token", "tool_call", "complete"]
    assert events[-1].usage == {"output_tokens": 2}
    assert result.state.content == "ab"
    assert calls == [("lookup", "c1", {"q": "x"})]


async def test_tool_call_only_answer_is_not_zero_output(pm: L0PluginManager) -> None:
    call = l0.Event(l0.EventType.TOOL_CALL, data={"id": "1", "name": "f", "arguments": {}})
    result = l0.run(lambda: tokens([call]), plugins=pm, retry=FAST)
    assert await result.read() == ""
    assert result.state.attempt == 1
    assert result.state.tool_calls == [{"id": "1", "name": "f", "arguments": {}}]


async def test_factory_may_return_an_awaitable(pm: L0PluginManager) -> None:
    async def create() -> AsyncIterator[str]:
        await asyncio.sleep(0)
        return tokens(TOKENS)

    assert await l0.run(create, plugins=pm).read() == TEXT


async def test_factory_receives_attempt_context(pm: L0PluginManager) -> None:
    seen: list[l0.AttemptContext] = []
    script = Script([Fault("raise", 1, ConnectionResetError("reset"))])

    def factory(ctx: l0.AttemptContext) -> AsyncIterator[str]:
        seen.append(ctx)
        return script.factory()

    assert await l0.run(factory, plugins=pm, retry=FAST).read() == TEXT
    assert [(c.attempt, c.is_retry, c.is_fallback) for c in seen] == [
        (1, False, False),
        (2, True, False),
    ]


async def test_wrap_runs_a_single_stream_without_retry(pm: L0PluginManager) -> None:
    result = l0.wrap(tokens(TOKENS), plugins=pm)
    assert isinstance(result, l0.Result)
    assert await result.read() == TEXT

    failing = Script([Fault("raise", 2, ConnectionResetError("reset"))])
    with pytest.raises(l0.RetryExhaustedError):
        await l0.wrap(failing.factory(), plugins=pm).read()
    assert failing.calls == 1


# --- retries ----------------------------------------------------------------------------------


async def test_network_error_retries_and_text_is_clean(pm: L0PluginManager) -> None:
    script = Script([Fault("raise", 3, ConnectionResetError("connection reset by peer"))])
    result = l0.run(script.factory, plugins=pm, retry=FAST)
    assert await result.read() == TEXT
    assert script.calls == 2
    assert result.state.network_retry_count == 1
    assert result.state.model_retry_count == 0


async def test_consumer_sees_a_reset_for_withdrawn_text(pm: L0PluginManager) -> None:
    script = Script([Fault("raise", 3, ConnectionResetError("reset"))])
    events = await collect(l0.run(script.factory, plugins=pm, retry=FAST))
    rendered = ""
    for event in events:
        if event.is_token:
            rendered += event.text
        elif event.is_reset:
            withdrawn = event.data["withdrawn"]
            assert rendered.endswith(withdrawn)
            rendered = rendered[: len(rendered) - len(withdrawn)]
    assert rendered == TEXT
    resets = [e for e in events if e.is_reset]
    assert len(resets) == 1
    assert resets[0].data["withdrawn"] == "".join(TOKENS[:3])
    errors = [e for e in events if e.is_error]
    assert errors[0].data["will_retry"] is True


async def test_model_errors_use_attempts_network_errors_do_not(pm: L0PluginManager) -> None:
    faults = [Fault("raise", 0, RuntimeError("model produced garbage"))] * 2 + [
        Fault("raise", 0, ConnectionResetError("reset"))
    ] * 3
    script = Script(list(faults))
    result = l0.run(
        script.factory, plugins=pm, retry=l0.Retry(attempts=2, max_retries=6, base_delay=0)
    )
    assert await result.read() == TEXT
    assert result.state.model_retry_count == 2
    assert result.state.network_retry_count == 3


async def test_attempts_exhausted_by_model_errors(pm: L0PluginManager) -> None:
    script = Script([Fault("raise", 0, RuntimeError("bad"))] * 10)
    with pytest.raises(l0.RetryExhaustedError) as info:
        await l0.run(
            script.factory, plugins=pm, retry=l0.Retry(attempts=2, max_retries=6, base_delay=0)
        ).read()
    assert script.calls == 3
    exc = info.value
    assert len(exc.errors) == 3
    assert isinstance(exc.last_error, RuntimeError)
    assert exc.__cause__ is exc.last_error
    assert exc.state.attempt == 3
    assert exc.category is l0.ErrorCategory.MODEL


async def test_max_retries_caps_network_errors(pm: L0PluginManager) -> None:
    script = Script([Fault("raise", 1, ConnectionResetError("reset"))] * 10)
    with pytest.raises(l0.RetryExhaustedError):
        await l0.run(script.factory, plugins=pm, retry=l0.Retry(max_retries=4, base_delay=0)).read()
    assert script.calls == 5
    assert script.closed == 5


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_errors_never_retry_and_keep_their_type(
    pm: L0PluginManager, status: int
) -> None:
    script = Script([Fault("status", status=status)] * 3)
    start = time.monotonic()
    with pytest.raises(StatusError) as info:
        await l0.run(script.factory, plugins=pm, retry=l0.Retry(base_delay=1.0)).read()
    assert time.monotonic() - start < 0.5
    assert script.calls == 1
    context = info.value.l0  # type: ignore[attr-defined]
    assert context.category is l0.ErrorCategory.FATAL
    assert any("[l0]" in note for note in info.value.__notes__)


async def test_internal_errors_raise_at_once_even_with_fallbacks(pm: L0PluginManager) -> None:
    calls = 0

    def broken() -> AsyncIterator[str]:
        nonlocal calls
        calls += 1
        raise TypeError("factory bug")

    with pytest.raises(TypeError, match="factory bug"):
        await l0.run(broken, fallbacks=[lambda: tokens(TOKENS)], plugins=pm, retry=FAST).read()
    assert calls == 1


async def test_a_non_stream_is_an_internal_error(pm: L0PluginManager) -> None:
    with pytest.raises(InvalidStreamError, match="no adapter"):
        await l0.run(lambda: 42, plugins=pm, retry=FAST).read()
    with pytest.raises(InvalidStreamError, match=r"yielded builtins\.dict"):
        await l0.run(lambda: tokens([{"x": 1}]), plugins=pm, retry=FAST).read()


@pytest.mark.parametrize("output", [[], ["", "  ", "\n"]])
async def test_zero_output_is_retried_without_using_attempts(
    pm: L0PluginManager, output: list[str]
) -> None:
    script = Script([Fault("zero")] * 2)
    first = Script([], tokens=output)

    def factory() -> AsyncIterator[str]:
        return first.factory() if script.calls == 0 and not script.faults else script.factory()

    calls = 0

    def mixed() -> AsyncIterator[str]:
        nonlocal calls
        calls += 1
        return tokens(output) if calls <= 2 else tokens(TOKENS)

    result = l0.run(mixed, plugins=pm, retry=l0.Retry(attempts=0, base_delay=0))
    assert await result.read() == TEXT
    assert calls == 3
    assert result.state.network_retry_count == 2
    assert result.state.model_retry_count == 0
    del factory


async def test_zero_output_exhausted_raises_typed_error(pm: L0PluginManager) -> None:
    with pytest.raises(l0.RetryExhaustedError) as info:
        await l0.run(
            lambda: tokens([]), plugins=pm, retry=l0.Retry(max_retries=1, base_delay=0)
        ).read()
    assert isinstance(info.value.last_error, ZeroOutputError)


async def test_retry_after_is_honoured(pm: L0PluginManager) -> None:
    error = StatusError(429, {"retry-after": "0.2"})
    script = Script([Fault("raise", 0, error)])
    start = time.monotonic()
    assert await l0.run(script.factory, plugins=pm, retry=FAST).read() == TEXT
    assert time.monotonic() - start >= 0.2


async def test_retry_after_beyond_the_cap_moves_on(pm: L0PluginManager) -> None:
    script = Script([Fault("raise", 0, StatusError(503, {"retry-after": "120"}))])
    start = time.monotonic()
    result = l0.run(
        script.factory,
        fallbacks=[lambda: tokens(["fallback"])],
        plugins=pm,
        retry=l0.Retry(base_delay=0, max_retry_after=5),
    )
    assert await result.read() == "fallback"
    assert time.monotonic() - start < 0.5
    assert result.state.fallback_index == 1


# --- fallbacks --------------------------------------------------------------------------------


async def test_fallbacks_in_order_with_fresh_budgets(pm: L0PluginManager) -> None:
    primary = Script([Fault("raise", 0, ConnectionResetError("reset"))] * 10)
    second = Script([Fault("raise", 0, ConnectionResetError("reset"))] * 10)
    third = Script([Fault("raise", 0, ConnectionResetError("reset"))] * 2)
    fallbacks: list[int] = []
    result = l0.run(
        primary.factory,
        fallbacks=[second.factory, third.factory],
        plugins=pm,
        retry=l0.Retry(max_retries=2, base_delay=0),
        on_fallback=lambda index, reason: fallbacks.append(index),
    )
    assert await result.read() == TEXT
    await result.wait_callbacks()
    assert (primary.calls, second.calls, third.calls) == (3, 3, 3)
    assert result.state.fallback_index == 2
    assert result.state.total_retries == 6
    assert fallbacks == [1, 2]


async def test_fallback_after_delivered_tokens_withdraws_them(pm: L0PluginManager) -> None:
    primary = Script([Fault("raise", 2, ConnectionResetError("reset"))])
    events = await collect(
        l0.run(
            primary.factory,
            fallbacks=[lambda: tokens(["B"])],
            plugins=pm,
            retry=l0.Retry(max_retries=0),
        )
    )
    kinds = [e.type for e in events]
    assert kinds == ["token", "token", "error", "reset", "token", "complete"]
    assert events[3].data["withdrawn"] == "The quick"


# --- abort and cancellation -----------------------------------------------------------------


def _l0_tasks() -> list[asyncio.Task[Any]]:
    current = asyncio.current_task()
    return [t for t in asyncio.all_tasks() if t is not current and not t.done()]


async def test_abort_while_provider_is_silent(pm: L0PluginManager) -> None:
    script = Script([Fault("stall", 2)])
    aborts: list[tuple[int, int]] = []
    result = l0.run(
        script.factory,
        plugins=pm,
        timeout=l0.Timeout(initial_token=5, inter_token=5),
        on_abort=lambda count, length: aborts.append((count, length)),
    )
    seen: list[str] = []

    async def consume() -> None:
        async for event in result:
            if event.is_token:
                seen.append(event.text or "")  # noqa: PERF401 - must keep tokens seen before abort

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    start = time.monotonic()
    result.abort()
    with pytest.raises(AbortedError):
        await task
    assert time.monotonic() - start < 0.1
    assert seen == TOKENS[:2]
    assert script.closed == 1
    assert result.state.aborted
    await result.wait_callbacks()
    assert aborts == [(2, len("The quick"))]
    assert _l0_tasks() == []


async def test_abort_from_inside_the_consumer_loop(pm: L0PluginManager) -> None:
    script = Script([Fault()])
    result = l0.run(script.factory, plugins=pm)
    seen: list[str] = []

    async def consume() -> None:
        async for event in result:
            seen.append(event.text or "")
            if len(seen) == 2:
                result.abort()

    with pytest.raises(AbortedError):
        await consume()
    assert seen == TOKENS[:2]
    await result.wait_callbacks()
    assert script.closed == 1
    assert _l0_tasks() == []


async def test_abort_during_backoff(pm: L0PluginManager) -> None:
    script = Script([Fault("raise", 0, ConnectionResetError("reset"))] * 5)
    result = l0.run(script.factory, plugins=pm, retry=l0.Retry(base_delay=10, max_delay=10))
    task = asyncio.create_task(result.read())
    await asyncio.sleep(0.05)
    result.abort()
    with pytest.raises(AbortedError):
        await task
    assert script.calls == 1


async def test_cancelling_the_consumer_closes_the_provider(pm: L0PluginManager) -> None:
    script = Script([Fault("stall", 1)])
    aborts: list[int] = []
    result = l0.run(script.factory, plugins=pm, on_abort=lambda c, n: aborts.append(c))
    task = asyncio.create_task(result.read())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert script.closed == 1
    assert result.state.aborted
    await result.wait_callbacks()
    assert aborts == [1]
    assert _l0_tasks() == []


async def test_context_manager_closes_an_unfinished_stream(pm: L0PluginManager) -> None:
    script = Script([Fault()])
    aborts: list[int] = []
    async with l0.run(script.factory, plugins=pm, on_abort=lambda c, n: aborts.append(c)) as result:
        async for _ in result:
            break
    await result.wait_callbacks()
    assert script.closed == 1
    assert aborts == [1]


async def test_context_manager_does_not_report_abort_after_success(pm: L0PluginManager) -> None:
    aborts: list[int] = []
    async with l0.run(
        lambda: tokens(TOKENS), plugins=pm, on_abort=lambda c, n: aborts.append(c)
    ) as result:
        assert await result.read() == TEXT
    await result.wait_callbacks()
    assert aborts == []
    assert not result.state.aborted


async def test_abort_before_start_and_after_finish(pm: L0PluginManager) -> None:
    result = l0.run(lambda: tokens(TOKENS), plugins=pm)
    result.abort()
    with pytest.raises(AbortedError):
        await result.read()
    done = l0.run(lambda: tokens(TOKENS), plugins=pm)
    assert await done.read() == TEXT
    done.abort()
    assert not done.state.aborted


async def test_result_is_consumed_once(pm: L0PluginManager) -> None:
    result = l0.run(lambda: tokens(TOKENS), plugins=pm)
    assert await result.read() == TEXT
    assert await result.read() == TEXT
    with pytest.raises(RuntimeError, match="has finished; a result streams once"):
        result.__aiter__()


async def test_provider_generator_is_finalised(pm: L0PluginManager) -> None:
    script = Script([Fault("raise", 2, ConnectionResetError("x"))] * 2)
    await l0.run(script.factory, plugins=pm, retry=FAST).read()
    gc.collect()
    assert script.closed == script.calls == 3


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"stream": 42}, TypeError, "stream=42"),
        ({"stream": None}, TypeError, "stream=None"),
        ({"fallbacks": "abc"}, TypeError, "fallbacks="),
        ({"fallbacks": [lambda: None, 3]}, TypeError, r"fallbacks\[1\]=3"),
        ({"retry": {"attempts": 3}}, TypeError, "retry="),
        ({"timeout": 5}, TypeError, "timeout=5"),
        ({"on_retry": "print"}, TypeError, "on_retry="),
        ({"context": [1]}, TypeError, "context="),
        ({"seed": "x"}, TypeError, "seed="),
    ],
)
def test_bad_arguments_name_the_parameter(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    args: dict[str, Any] = {"stream": lambda: tokens(TOKENS), **kwargs}
    with pytest.raises(error, match=match):
        l0.run(**args)


async def test_passing_a_stream_instead_of_a_factory_explains_wrap() -> None:
    stream = tokens(TOKENS)
    with pytest.raises(TypeError, match=r"l0\.wrap\(stream\)"):
        l0.run(stream)  # type: ignore[arg-type]
    await stream.aclose()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: l0.Retry(attempts=-1), "attempts=-1"),
        (lambda: l0.Retry(max_retries=1.5), "max_retries=1.5"),  # type: ignore[arg-type]
        (lambda: l0.Retry(base_delay=-1), "base_delay=-1"),
        (lambda: l0.Timeout(initial_token=0), "initial_token=0"),
        (lambda: l0.Timeout(inter_token=-2), "inter_token=-2"),
        (lambda: l0.Timeout(inter_token="1"), "inter_token='1'"),  # type: ignore[arg-type]
    ],
)
def test_bad_retry_and_timeout_values(factory: Any, match: str) -> None:
    with pytest.raises((TypeError, ValueError), match=match):
        factory()


def test_wrap_rejects_unknown_objects() -> None:
    with pytest.raises(TypeError, match="no installed plugin wraps"):
        l0.wrap(object(), plugins=l0.build_plugin_manager(entry_points=False))
