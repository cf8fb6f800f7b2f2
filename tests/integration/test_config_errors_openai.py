"""Issue 8 item 1: a bad configured value fails at ``l0.run`` and never hides a provider error.

Through the real ``openai`` SDK against ``ChaosServer``: the bad strategy must be reported
before any request is sent, and a valid configuration must let the provider's own 503 through.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest

import l0
from l0.config import reset_config_cache
from l0.testing import ChaosServer, Fault

pytestmark = pytest.mark.usefixtures("isolated_config")

MESSAGES: Any = [{"role": "user", "content": "Say the sentence."}]


def client_for(server: ChaosServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)


async def test_misspelt_strategy_fails_at_run_before_any_request(tmp_path: Path) -> None:
    (tmp_path / "l0.toml").write_text('[retry]\nstrategy = "exponentail"\nbase_delay = 0\n')
    reset_config_cache()
    async with ChaosServer([Fault.status(503)] * 3) as server:
        client = client_for(server)
        with pytest.raises(l0.ConfigError) as info:
            l0.run(
                lambda: client.chat.completions.create(
                    model="chaos-1", messages=MESSAGES, stream=True
                )
            )
        message = str(info.value)
        assert str(tmp_path / "l0.toml") in message
        assert "retry.strategy = 'exponentail'" in message
        assert "exponential" in message
        assert "fixed-jitter" in message
        assert "Retry(strategy=" not in message
        assert server.requests == []


async def test_provider_503_is_not_replaced_by_a_config_error(tmp_path: Path) -> None:
    # The README's spelling, upper case with an underscore, is a valid strategy.
    (tmp_path / "l0.toml").write_text(
        '[retry]\nstrategy = "FIXED_JITTER"\nbase_delay = 0\nmax_delay = 0\nmax_retries = 2\n'
    )
    reset_config_cache()
    async with ChaosServer(default=Fault.status(503)) as server:
        client = client_for(server)
        result = l0.run(
            lambda: client.chat.completions.create(model="chaos-1", messages=MESSAGES, stream=True)
        )
        assert isinstance(result, l0.Result)  # created without error
        with pytest.raises(l0.RetryExhaustedError) as info:
            await result.read()
        assert isinstance(info.value.last_error, openai.InternalServerError)
        assert info.value.last_error.status_code == 503
        assert len(server.requests) == 3
