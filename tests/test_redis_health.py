"""Provider health shared through a real Redis (``l0-redis``): across processes, Redis down.

A real ``redis-server`` runs for these tests (``l0_redis.testing.RedisServer``: 127.0.0.1, a
free port, a temporary directory, stopped by PID). ``.ci/run`` installs it when missing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import redis
from l0_redis.testing import INSTALL_HINT, RedisServer, redis_server_binary

import l0
from l0.config import reset_config_cache
from l0.health import health_service, health_status, provider_key
from l0.testing import ChaosServer, Fault

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "tests" / "health_worker.py"
MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    if redis_server_binary() is None:
        pytest.fail(INSTALL_HINT)
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def shared(
    isolated_config: None, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> RedisServer:
    monkeypatch.setenv("L0_REDIS_URL", redis_server.url)
    # A first contact with Redis (connect + script load) may take longer than the default
    # few milliseconds on a loaded machine; these tests are about sharing, not that budget.
    monkeypatch.setenv("L0_HEALTH_STORE_TIMEOUT", "0.5")
    reset_config_cache()
    return redis_server


def manager() -> l0.L0PluginManager:
    """One plugin manager stands for one worker process: it has its own health service."""
    return l0.build_plugin_manager(allow=["openai", "redis"])


async def ask(server: ChaosServer, pm: l0.L0PluginManager, model: str, **options: Any) -> str:
    sdk = openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)
    client = l0.wrap(sdk, plugins=pm, retry=l0.Retry(max_retries=0, base_delay=0))
    try:
        result = await client.chat.completions.create(
            model=model, messages=MESSAGES, stream=True, l0_options=options
        )
        return str(await result.read())
    finally:
        await sdk.close()


def requests_for(server: ChaosServer, model: str) -> list[float]:
    return [r.time for r in server.requests if r.model == model]


def run_workers(
    server: ChaosServer,
    env: dict[str, str],
    processes: int,
    sessions: int,
    spacing: float,
    retries: int = 2,
) -> list[dict[str, Any]]:
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                server.base_url,
                "dead",
                "alive",
                str(sessions),
                str(spacing),
                str(retries),
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    summaries = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        summaries.append(json.loads(out.strip().splitlines()[-1]))
    return summaries


def worker_env(redis_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("L0_")}
    env.update(
        L0_HEALTH_FAILURE_THRESHOLD="5",
        L0_HEALTH_OPEN_SECONDS="2",
        L0_HEALTH_STORE_TIMEOUT="0.25",
        L0_LOAD_PLUGINS="openai,redis",
        LITELLM_LOCAL_MODEL_COST_MAP="True",
    )
    if redis_url is not None:
        env["L0_REDIS_URL"] = redis_url
    return env


PROCESSES = 8
SESSIONS = 25
THRESHOLD = 5


def test_eight_processes_share_one_circuit(redis_server: RedisServer) -> None:
    """8 worker processes x 25 sessions against a dead model, with and without Redis."""
    results = {}
    with ChaosServer() as server:
        server.set_default(Fault.status(503), model="dead")
        for mode, url in (("local", None), ("redis", redis_server.url)):
            server.reset()
            started = time.monotonic()
            summaries = run_workers(server, worker_env(url), PROCESSES, SESSIONS, 0.05)
            elapsed = time.monotonic() - started
            results[mode] = (len(requests_for(server, "dead")), elapsed, summaries)
            assert all(s["answered"] == SESSIONS for s in summaries)
            assert {s["store"] for s in summaries} == (
                {"local"} if url is None else {"redis ($L0_REDIS_URL)"}
            )
    local, _, _ = results["local"]
    shared, _, summaries = results["redis"]
    probes = sum(s["events"].get("CIRCUIT_HALF_OPEN", 0) for s in summaries)
    # Beyond the threshold: requests already in flight when the circuit opened (at most one
    # per other process, since each process lets one attempt make first contact), and one
    # probe per open period.
    bound = THRESHOLD + (PROCESSES - 1) + probes
    print(
        f"\ndead-model requests, {PROCESSES} processes x {SESSIONS} sessions: "
        f"without Redis {local}, with Redis {shared} (bound {bound}, {probes} probes)"
    )
    assert shared <= bound
    assert local >= PROCESSES * THRESHOLD
    assert shared < local
    opened = sum(s["events"].get("CIRCUIT_OPENED", 0) for s in summaries)
    assert opened >= 1


def test_a_retry_after_seen_by_one_process_holds_back_the_others(
    redis_server: RedisServer,
) -> None:
    with ChaosServer() as server:
        # Long, so that slow process start-ups on a busy machine still fall inside it.
        server.set_script([Fault.status(429, headers={"Retry-After": "120"})], model="dead")
        env = worker_env(redis_server.url)
        first = run_workers(server, env, 1, 1, 0, retries=0)
        assert first[0]["events"].get("RETRY_AFTER_HELD", 0) == 0
        others = run_workers(server, env, 3, 5, 0, retries=0)
        # Every session of the other processes went to its fallback without a request.
        assert len(requests_for(server, "dead")) == 1
        assert len(requests_for(server, "alive")) == 1 + 15
        assert sum(s["events"].get("RETRY_AFTER_HELD", 0) for s in others) == 15


async def test_redis_stopped_mid_run_then_back(
    shared: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    pm1, pm2 = manager(), manager()
    ra = Fault.status(429, headers={"Retry-After": "30"})
    async with ChaosServer(model_scripts={"m1": [ra], "m2": [ra]}) as server:
        # Shared: what pm1 learns, pm2 honours.
        assert await ask(server, pm1, "m1", fallback_models=["spare"])
        assert await ask(server, pm2, "m1", fallback_models=["spare"])
        assert len(requests_for(server, "m1")) == 1
        status = await health_status(pm1)
        assert status["ok"] is True
        assert status["shared"] is True
        assert "latency_ms" in status

        shared.stop()
        with caplog.at_level(logging.WARNING, logger="l0"):
            texts = [await ask(server, pm1, "ok") for _ in range(10)]
        assert all(texts)
        warnings = [r for r in caplog.records if "health store" in r.getMessage()]
        assert len(warnings) == 1
        assert "$L0_REDIS_URL" in warnings[0].getMessage()
        assert (await health_status(pm1))["ok"] is False

        shared.start()
        for _ in range(2):
            # The first command after the restart may meet the dead connection; the store
            # is tried again a second later.
            await asyncio.sleep(1.2)
            await ask(server, pm1, "ok")
            await ask(server, pm2, "ok")
        assert await ask(server, pm1, "m2", fallback_models=["spare"])
        assert await ask(server, pm2, "m2", fallback_models=["spare"])
        assert len(requests_for(server, "m2")) == 1
    for pm in (pm1, pm2):
        store = health_service(pm, l0.config.load_config()).shared
        await store.aclose()  # type: ignore[union-attr]


async def test_keys_are_namespaced_and_expire(shared: RedisServer) -> None:
    pm = manager()
    async with ChaosServer() as server:
        server.set_default(Fault.status(503), model="down")
        with pytest.raises(l0.RetryExhaustedError):
            await ask(server, pm, "down")
        key = provider_key(server.base_url, "down")
    client = redis.Redis.from_url(shared.url)
    try:
        names = [n.decode() if isinstance(n, bytes) else n for n in client.keys("*")]
        assert names
        assert all(name.startswith("l0:health:") for name in names)
        assert f"l0:health:{key}" in names
        assert all(client.pttl(name) > 0 for name in names)
    finally:
        client.close()
    store = health_service(pm, l0.config.load_config()).shared
    await store.aclose()  # type: ignore[union-attr]


async def test_an_unreachable_redis_warns_once_and_streams_go_on(
    isolated_config: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with RedisServer() as gone:
        url = gone.url
    monkeypatch.setenv("L0_REDIS_URL", url)
    reset_config_cache()
    pm = manager()
    async with ChaosServer() as server:
        with caplog.at_level(logging.WARNING, logger="l0"):
            assert all([await ask(server, pm, "m") for _ in range(5)])
    warnings = [r.getMessage() for r in caplog.records if "health store" in r.getMessage()]
    assert len(warnings) == 1
    assert "$L0_REDIS_URL" in warnings[0]


async def test_a_redis_that_answers_errors_warns_and_streams_go_on(
    shared: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    pm = manager()
    async with ChaosServer() as server:
        key = provider_key(server.base_url, "m")
        client = redis.Redis.from_url(shared.url)
        client.set(f"l0:health:{key}", "not a hash")  # WRONGTYPE for every script
        client.close()
        with caplog.at_level(logging.WARNING, logger="l0"):
            assert await ask(server, pm, "m")
    warnings = [r.getMessage() for r in caplog.records if "health store" in r.getMessage()]
    assert len(warnings) == 1
    assert "WRONGTYPE" in warnings[0]


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "redis://127.0.0.1:notaport/0"])
async def test_a_malformed_redis_url_is_named_and_streams_go_on(
    isolated_config: None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    url: str,
) -> None:
    monkeypatch.setenv("L0_REDIS_URL", url)
    reset_config_cache()

    async def tokens() -> Any:
        yield "x"

    with caplog.at_level(logging.WARNING, logger="l0"):
        assert await l0.run(tokens, provider="k", plugins=manager()).read() == "x"
    messages = [r.getMessage() for r in caplog.records if "l0-redis" in r.getMessage()]
    assert len(messages) == 1
    assert "$L0_REDIS_URL" in messages[0]
    assert (await health_status(manager()))["shared"] is False
