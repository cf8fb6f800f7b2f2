"""Provider health in one process: shared Retry-After, circuit breaking, retry budget, bad input.

Real ``openai`` SDK over real HTTP to ``l0.testing.ChaosServer``; each test has its own plugin
manager, hence its own in-process health store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import openai
import pytest

import l0
from l0.errors import (
    CircuitOpenError,
    ConfigError,
    RetryAfterWindowError,
    RetryBudgetExhaustedError,
)
from l0.events import ObservabilityEvent
from l0.health import Health, LocalHealthStore, provider_key
from l0.testing import ChaosServer, Fault

MESSAGES = [{"role": "user", "content": "hi"}]


def client_for(server: ChaosServer, pm: l0.L0PluginManager, **options: Any) -> Any:
    sdk = openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)
    return l0.wrap(sdk, plugins=pm, **options)


async def ask(client: Any, model: str, **options: Any) -> l0.Result:
    result: l0.Result = await client.chat.completions.create(
        model=model, messages=MESSAGES, stream=True, l0_options=options
    )
    return result


def requests_for(server: ChaosServer, model: str) -> list[float]:
    return [r.time for r in server.requests if r.model == model]


async def test_a_retry_after_seen_once_holds_back_fifty_sessions(isolated_config: None) -> None:
    pm = l0.build_plugin_manager(allow=["openai"])
    ra = Fault.status(429, headers={"Retry-After": "2"})
    async with ChaosServer(model_scripts={"busy": [ra]}) as server:
        events: list[ObservabilityEvent] = []
        client = client_for(
            server, pm, retry=l0.Retry(base_delay=0, max_delay=0), on_event=events.append
        )

        async def with_fallback() -> str:
            result = await ask(client, "busy", fallback_models=["spare"])
            return await result.read()

        texts = await asyncio.gather(*(with_fallback() for _ in range(50)))
        assert all(texts)
        first, *later = requests_for(server, "busy")
        # One request saw the 429; nothing reached the model for 2 s (the first session's own
        # retry may come after that); every other session fell back without trying.
        assert all(t - first >= 2.0 for t in later)
        assert len(later) <= 1
        assert len(requests_for(server, "spare")) == 50 - len(later)
        held = [e for e in events if e.type is l0.ObservabilityEventType.RETRY_AFTER_HELD]
        assert len(held) >= 49
        assert {e["action"] for e in held} == {"fallback"}

        # Without a fallback the sessions wait the window out: nothing reaches the model
        # before the 2 s are up, then all of them succeed there.
        server.set_script([ra], model="busy2")

        async def waiting() -> str:
            return await (await ask(client, "busy2")).read()

        texts = await asyncio.gather(*(waiting() for _ in range(50)))
        assert all(texts)
        first, *rest = requests_for(server, "busy2")
        assert rest
        assert min(rest) - first >= 2.0
        assert len(rest) == 50  # the first session's retry plus the 49 that waited


async def test_a_dead_model_opens_its_circuit_then_one_probe_closes_it(
    isolated_config: None,
) -> None:
    pm = l0.build_plugin_manager(allow=["openai"])
    # Long enough that the waves below finish inside it even on a loaded machine.
    health = Health(failure_threshold=3, open_seconds=6.0)
    async with ChaosServer() as server:
        server.set_default(Fault.status(503), model="dead")
        events: list[ObservabilityEvent] = []
        client = client_for(
            server,
            pm,
            retry=l0.Retry(max_retries=2, base_delay=0, max_delay=0),
            health=health,
            on_event=events.append,
        )

        async def one() -> str:
            return await (await ask(client, "dead", fallback_models=["alive"])).read()

        assert all(await asyncio.gather(*(one() for _ in range(20))))
        # The sessions tried the dead model one at a time until the breaker opened.
        assert len(requests_for(server, "dead")) == 3
        kinds = [e.type for e in events]
        assert kinds.count(l0.ObservabilityEventType.CIRCUIT_OPENED) == 1

        # Later sessions reach their fallback without a request to the dead model.
        assert all(await asyncio.gather(*(one() for _ in range(10))))
        assert len(requests_for(server, "dead")) == 3

        # Without a fallback: a typed error saying until when.
        with pytest.raises(CircuitOpenError) as caught:
            await (await ask(client, "dead")).read()
        assert caught.value.key == provider_key(server.base_url, "dead")
        assert 0 < caught.value.retry_in <= 6.0
        assert "circuit is open until" in str(caught.value)

        # The model comes back (slowly, so the probe is still out while others arrive).
        server.set_default(None, model="dead")
        server.set_script([Fault.ok(delay=0.2)], model="dead")
        await asyncio.sleep(caught.value.retry_in + 0.1)
        assert all(await asyncio.gather(*(one() for _ in range(10))))
        # One probe went first; the others waited for its first token, then followed.
        probe, *followers = requests_for(server, "dead")[3:]
        assert followers
        assert all(t - probe >= 0.15 for t in followers)
        kinds = [e.type for e in events]
        assert kinds.count(l0.ObservabilityEventType.CIRCUIT_HALF_OPEN) == 1
        assert kinds.count(l0.ObservabilityEventType.CIRCUIT_CLOSED) == 1

        # Closed again: traffic resumes.
        before = len(requests_for(server, "dead"))
        assert all(await asyncio.gather(*(one() for _ in range(5))))
        assert len(requests_for(server, "dead")) == before + 5


async def test_rate_limits_and_model_errors_do_not_open_the_circuit() -> None:
    store = LocalHealthStore()
    config = Health(failure_threshold=2)
    for _ in range(5):
        assert await store.record("k", False, False, False, config) == ""
    assert (await store.admit("k", False, config)).verdict == "go"
    assert await store.record("k", False, True, False, config) == ""
    assert await store.record("k", True, False, False, config) == ""  # a success resets
    assert await store.record("k", False, True, False, config) == ""
    assert await store.record("k", False, True, False, config) == "opened"


async def test_retry_budget_caps_the_retries_of_three_hundred_timed_out_sessions(
    isolated_config: None,
) -> None:
    pm = l0.build_plugin_manager(allow=["openai"])
    sessions = 300
    health = Health(
        retry_budget=0.1,
        retry_budget_min=5,
        budget_window=120,
        contact_wait=0,
        failure_threshold=100_000,
    )
    stall = Fault.slow_first_token(60)
    async with ChaosServer(model_scripts={"slow": [stall] * sessions}) as server:
        sdk = openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        client = l0.wrap(
            sdk,
            plugins=pm,
            health=health,
            retry=l0.Retry(max_retries=1, base_delay=0, max_delay=0),
            # Generous: the server shares this process (and 2 cores) with 300 clients.
            timeout=l0.Timeout(initial_token=8.0, inter_token=30),
        )

        async def one(i: int) -> str | BaseException:
            fallbacks = ["spare"] if i % 2 == 0 else []
            try:
                return await (await ask(client, "slow", fallback_models=fallbacks)).read()
            except Exception as exc:
                return exc

        outcomes = await asyncio.gather(*(one(i) for i in range(sessions)))
        await sdk.close()
    retries = len(requests_for(server, "slow")) - sessions
    # The first attempts of all sessions are counted before any retry (they time out first).
    assert 0 < retries <= max(5, 0.1 * sessions)
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    assert all(isinstance(f, RetryBudgetExhaustedError) for f in failures), failures[:3]
    assert all("retry budget" in str(f) for f in failures)
    # Sessions with a fallback all got an answer; those without either had a retry from
    # the budget or failed fast.
    assert all(isinstance(o, str) for i, o in enumerate(outcomes) if i % 2 == 0)
    assert len(failures) >= sessions // 2 - retries
    assert len(requests_for(server, "spare")) >= sessions // 2 - retries


async def test_plain_factories_use_the_provider_key(isolated_config: None) -> None:
    pm = l0.build_plugin_manager(entry_points=False)
    calls = {"primary": 0}

    async def broken() -> Any:
        calls["primary"] += 1
        for _ in ():
            yield ""
        raise ConnectionResetError("down")

    async def spare() -> Any:
        yield "ok"

    health = Health(failure_threshold=2, open_seconds=60)
    retry = l0.Retry(max_retries=0, base_delay=0)
    for _ in range(5):
        result = l0.run(
            broken, fallbacks=[spare], provider="mine", plugins=pm, health=health, retry=retry
        )
        assert await result.read() == "ok"
    assert calls["primary"] == 2
    # Without a key nothing is shared.
    for _ in range(3):
        result = l0.run(broken, fallbacks=[spare], plugins=pm, health=health, retry=retry)
        assert await result.read() == "ok"
    assert calls["primary"] == 5
    # health=False turns it off for one run.
    result = l0.run(
        broken, fallbacks=[spare], provider="mine", plugins=pm, health=False, retry=retry
    )
    assert await result.read() == "ok"
    assert calls["primary"] == 6


async def test_a_retry_after_longer_than_max_retry_after_fails_fast(isolated_config: None) -> None:
    pm = l0.build_plugin_manager(entry_points=False)

    class Limited(Exception):
        status_code = 429
        headers = {"retry-after": "30"}  # noqa: RUF012

    async def limited() -> Any:
        for _ in ():
            yield ""
        raise Limited("slow down")

    retry = l0.Retry(max_retries=0, base_delay=0, max_retry_after=5)
    with pytest.raises(l0.RetryExhaustedError):
        await l0.run(limited, provider="rl", plugins=pm, retry=retry).read()
    started = time.monotonic()
    with pytest.raises(RetryAfterWindowError) as caught:
        await l0.run(limited, provider="rl", plugins=pm, retry=retry).read()
    assert time.monotonic() - started < 5
    assert caught.value.key == "rl"
    assert 25 < caught.value.retry_in <= 30


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"failure_threshold": 0}, ValueError, "failure_threshold=0"),
        ({"failure_threshold": 1.5}, TypeError, "failure_threshold=1.5"),
        ({"open_seconds": -1}, ValueError, "open_seconds=-1"),
        ({"retry_budget": float("nan")}, TypeError, "retry_budget=nan"),
        ({"enabled": "yes"}, TypeError, "enabled='yes'"),
        ({"store_timeout": 0}, ValueError, "store_timeout=0"),
    ],
)
def test_bad_thresholds_are_named(
    kwargs: dict[str, Any], error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words.replace("(", r"\(")):
        Health(**kwargs)


def test_bad_config_fails_at_load(isolated_config: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from l0.config import load_config, reset_config_cache

    Path("pyproject.toml").write_text("[tool.l0.health]\nfailure_threshold = 0\n")
    with pytest.raises(ConfigError, match=r"health.failure_threshold.*0.*>= 1"):
        load_config()
    Path("pyproject.toml").write_text("[tool.l0.health]\nopen_seconds = 5\n")
    reset_config_cache()
    assert load_config().get("health", "open_seconds") == 5.0
    monkeypatch.setenv("L0_HEALTH_RETRY_BUDGET", "lots")
    reset_config_cache()
    with pytest.raises(ConfigError, match=r"\$L0_HEALTH_RETRY_BUDGET.*'lots'"):
        load_config()


def test_bad_run_arguments_are_named(isolated_config: None) -> None:
    async def tokens() -> Any:
        yield "x"

    with pytest.raises(TypeError, match=r"provider=123"):
        l0.run(tokens, provider=123)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"provider=\['a', 'b'\]"):
        l0.run(tokens, provider=["a", "b"])
    with pytest.raises(TypeError, match=r"provider\[0\]=''"):
        l0.run(tokens, provider=[""])
    with pytest.raises(TypeError, match=r"health='on'"):
        l0.run(tokens, health="on")  # type: ignore[arg-type]


async def test_a_failing_store_plugin_logs_and_streams_carry_on(
    isolated_config: None, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(LocalHealthStore):
        name = "broken"

        async def admit(self, key: str, retry: bool, config: Health) -> Any:
            raise OSError("store unreachable")

    class Plugin:
        @l0.hookimpl
        def l0_open_health_store(self, settings: Any) -> Any:
            return Broken()

    pm = l0.build_plugin_manager(entry_points=False)
    pm.register(Plugin())

    async def tokens() -> Any:
        yield "fine"

    with caplog.at_level(logging.WARNING, logger="l0"):
        for _ in range(5):
            assert await l0.run(tokens, provider="k", plugins=pm).read() == "fine"
    warnings = [r for r in caplog.records if "health store" in r.getMessage()]
    assert len(warnings) == 1
    assert "broken" in warnings[0].getMessage()


async def test_a_slow_store_is_answered_locally_and_its_update_still_lands(
    isolated_config: None,
) -> None:
    landed: list[str] = []
    release = asyncio.Event()

    class Slow(LocalHealthStore):
        name = "slow"

        async def note_retry_after(self, key: str, seconds: float) -> None:
            await release.wait()  # slower than any timeout: until the test says so
            landed.append(key)

    class Plugin:
        @l0.hookimpl
        def l0_open_health_store(self, settings: Any) -> Any:
            return Slow()

    pm = l0.build_plugin_manager(entry_points=False)
    pm.register(Plugin())

    class Limited(Exception):
        status_code = 429
        headers = {"retry-after": "1"}  # noqa: RUF012

    async def limited() -> Any:
        for _ in ():
            yield ""
        raise Limited("slow down")

    async def spare() -> Any:
        yield "ok"

    result = l0.run(
        limited,
        fallbacks=[spare],
        provider=["k", None],
        plugins=pm,
        retry=l0.Retry(max_retries=0),
        health=Health(store_timeout=0.01),
    )
    # The session completes while the store has not answered: it never waited for it.
    assert await result.read() == "ok"
    assert landed == []
    release.set()
    async with asyncio.timeout(10):
        while not landed:
            await asyncio.sleep(0.01)
    assert landed == ["k"]


def test_a_store_plugin_that_returns_something_else_is_named(isolated_config: None) -> None:
    class Plugin:
        @l0.hookimpl
        def l0_open_health_store(self, settings: Any) -> Any:
            return "not a store"

    pm = l0.build_plugin_manager(entry_points=False)
    pm.register(Plugin())

    async def tokens() -> Any:
        yield "x"

    with pytest.raises(l0.errors.L0PluginError, match="l0_open_health_store returned str"):
        l0.run(tokens, provider="k", plugins=pm)
