"""Issue 8 item 10: ``l0.wrap`` and ``context_of`` are typed.

This module is checked by ``mypy --strict`` with the rest of the tests (``nox -s typecheck``):
each ``assert_type`` is a type assertion there and a no-op here, where the same calls run
against ``ChaosServer``. ``test_mypy_rejects_typos`` runs mypy on code with the mistakes of
issue 8 and checks that each is reported.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, assert_type

import openai
import pytest
from l0_openai import L0AsyncOpenAI

import l0
from l0.errors import ErrorContext, context_of
from l0.testing import ChaosServer, Fault

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".mypy_cache" / "snippets"
MESSAGES: Any = [{"role": "user", "content": "Say the sentence."}]


async def words() -> AsyncIterator[str]:
    for word in ("typed ", "stream"):
        yield word


async def test_wrap_of_a_stream_is_a_result() -> None:
    result = l0.wrap(words(), timeout=l0.Timeout(initial_token=30))
    assert_type(result, l0.Result)
    assert await result.read() == "typed stream"


async def test_wrapped_client_streaming_create_is_a_result() -> None:
    async with ChaosServer(text="Hello typed world.") as server:
        raw = openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        client = l0.wrap(raw, retry=l0.Retry(base_delay=0, max_delay=0))
        assert_type(client, L0AsyncOpenAI)
        result = client.chat.completions.create(model="chaos-1", messages=MESSAGES, stream=True)
        assert_type(result, l0.Result)
        assert await result.read() == "Hello typed world."
        # Without stream=True the SDK's coroutine comes back, typed as such.
        whole = await client.chat.completions.create(model="chaos-1", messages=MESSAGES)
        assert_type(whole, openai.types.chat.ChatCompletion)
        assert whole.choices[0].message.content == "Hello typed world."
        await raw.close()


async def test_context_of_is_typed() -> None:
    async with ChaosServer([Fault.status(401)]) as server:
        raw = openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        client = l0.wrap(raw)
        with pytest.raises(openai.AuthenticationError) as info:
            await client.chat.completions.create(
                model="chaos-1", messages=MESSAGES, stream=True
            ).read()
        context = context_of(info.value)
        assert_type(context, ErrorContext | None)
        assert context is not None
        assert context.category is l0.ErrorCategory.FATAL
        assert context_of(ValueError("not from L0")) is None
        await raw.close()


BAD = """
from typing import Any

import openai

import l0

MESSAGES: Any = []


async def main() -> None:
    client = l0.wrap(openai.AsyncOpenAI(api_key="x"))
    client.chat.completions.creat(model="m", messages=MESSAGES, stream=True)
    l0.wrap(openai.AsyncOpenAI(api_key="x"), retyr=l0.Retry())
    async for event in client.chat.completions.create(model="m", messages=MESSAGES):
        print(event)
    try:
        pass
    except openai.AuthenticationError as error:
        print(error.l0.category)
"""

GOOD = """
from typing import Any

import openai

import l0
from l0.errors import context_of

MESSAGES: Any = []


async def main() -> None:
    client = l0.wrap(openai.AsyncOpenAI(api_key="x"), retry=l0.Retry(), fallback_models=["b"])
    async for event in client.chat.completions.create(model="m", messages=MESSAGES, stream=True):
        print(event.text)
    try:
        pass
    except openai.AuthenticationError as error:
        context = context_of(error)
        print(context.category if context else None)
"""


def test_mypy_rejects_typos(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text(textwrap.dedent(BAD))
    (tmp_path / "good.py").write_text(textwrap.dedent(GOOD))
    done = subprocess.run(
        # A cache of its own next to the project's: the SDK's types are analysed once.
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(CACHE), "bad.py", "good.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "MYPY_FORCE_COLOR": "0"},
    )
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    lines = [line for line in out.splitlines() if ": error:" in line]
    assert not [line for line in lines if line.startswith("good.py")], out
    assert any('"creat"' in line for line in lines), out
    assert any('"retyr"' in line for line in lines), out
    assert any("__aiter__" in line or "AsyncIterable" in line for line in lines), out
    assert any('has no attribute "l0"' in line for line in lines), out
