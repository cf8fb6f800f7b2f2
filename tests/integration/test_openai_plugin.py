"""The ``l0-openai`` distribution as installed: entry point, lazy imports, helpful errors."""

from __future__ import annotations

import subprocess
import sys
import time
from importlib import metadata
from typing import Any

import openai
import pytest
from l0_openai import OpenAIAdapter
from openai.types.chat import ChatCompletionChunk

import l0
from l0 import adapters
from l0.errors import AdapterNotFoundError, InvalidStreamError, ToolCallError
from l0.tool_calls import ChatChunkReader, IncompleteStreamError, ToolCallAssembler
from l0.types import Event
from tests.runtime_helpers import read_all


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_entry_point_registers_the_plugin() -> None:
    pm = l0.build_plugin_manager()
    infos = {info.name: info for info in pm.list_plugins()}
    assert infos["openai"].origin == "l0-openai"
    assert not infos["openai"].builtin
    assert set(infos["openai"].hooks) == {
        "l0_categorize_error",
        "l0_detect_adapter",
        "l0_wrap_client",
    }


def test_loading_the_plugins_imports_no_sdk() -> None:
    done = run_python(
        "import sys, l0\n"
        "pm = l0.build_plugin_manager()\n"
        "assert {'openai', 'litellm'} <= {i.name for i in pm.list_plugins()}\n"
        "print(sorted(m for m in ('openai', 'litellm') if m in sys.modules))\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_missing_openai_names_what_to_install() -> None:
    done = run_python(
        "import sys\n"
        "sys.modules['openai'] = None\n"
        "try:\n"
        "    import l0_openai\n"
        "except ImportError as exc:\n"
        "    print('import:', exc)\n"
        "import l0\n"
        "try:\n"
        "    l0.build_plugin_manager()\n"
        "except l0.errors.L0PluginError as exc:\n"
        "    print('plugins:', exc)\n"
    )
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.strip().splitlines()
    assert first.startswith("import: l0-openai needs the OpenAI SDK")
    assert "pip install 'openai>=1.30'" in first
    assert second.startswith("plugins: plugin 'openai' from l0-openai failed to import")
    assert "L0_DISABLE_PLUGINS=openai" in second


async def test_unknown_stream_lists_the_adapters_tried() -> None:
    started = time.monotonic()
    with pytest.raises(AdapterNotFoundError) as caught:
        await l0.run(stream=object, retry=l0.Retry(max_retries=3)).read()
    assert time.monotonic() - started < 1.0  # a programming error: raised at once, not retried
    message = str(caught.value)
    assert "builtins.object" in message
    assert "tried: " in message
    for tried in ("openai (plugin)", "litellm (plugin)", "iter_adapter (plugin)"):
        assert tried in message
    assert "l0.Adapters.register(" in message
    assert "adapter=" in message


async def test_unknown_sdk_like_stream_names_its_type_and_how_to_add_an_adapter() -> None:
    class VendorStream:
        """Looks like an SDK stream, but is not async-iterable: no adapter can read it."""

        def __iter__(self) -> Any:
            return iter(["sync", "chunks"])

    l0.Adapters.register(OpenAIAdapter())  # in-process adapters are listed first
    try:
        with pytest.raises(AdapterNotFoundError) as caught:
            await l0.run(VendorStream, retry=l0.Retry(max_retries=0)).read()
    finally:
        l0.Adapters.unregister("openai")
    message = str(caught.value)
    assert "VendorStream" in message
    assert "tried: openai, " in message
    assert "pip install l0-openai / l0-litellm" in message
    assert "l0.Adapters.register(" in message


def test_install_hint_names_the_distribution_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    client = openai.AsyncOpenAI(api_key="test", base_url="http://127.0.0.1:9/v1")

    def not_installed(name: str) -> Any:
        raise metadata.PackageNotFoundError(name)

    # l0.adapters looks the distribution up through importlib.metadata at call time.
    monkeypatch.setattr(metadata, "distribution", not_installed)
    hint = adapters.install_hint(client)
    assert "pip install l0-openai" in hint
    assert "installed here" not in hint
    monkeypatch.undo()
    # l0-openai is installed in this environment: then the advice is to load its plugin, and
    # whether it is loaded is checked, not assumed (issue 8).
    hint = adapters.install_hint(client)
    assert "pip install" not in hint
    assert "check that its plugin 'openai' is loaded" in hint
    assert "L0_DISABLE_PLUGINS" in hint
    assert "is not loaded in this plugin manager" in adapters.install_hint(
        client, l0.build_plugin_manager(entry_points=False)
    )


async def test_wrap_without_the_openai_plugin_says_what_to_install() -> None:
    pm = l0.build_plugin_manager(blocked=["openai"])
    raw = openai.AsyncOpenAI(api_key="test", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(TypeError) as caught:
        l0.wrap(raw, plugins=pm)
    message = str(caught.value)
    assert message.startswith("l0.wrap(openai.AsyncOpenAI)")
    assert "l0-openai is installed, but its plugin 'openai' is disabled" in message
    with pytest.raises(TypeError, match=r"l0\.run\(stream=\.\.\.\)"):
        l0.wrap(object(), plugins=pm)
    await raw.close()


async def test_openai_stream_without_the_plugin_says_what_to_install() -> None:
    from l0.testing import ChaosServer

    pm = l0.build_plugin_manager(blocked=["openai"])
    async with ChaosServer() as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        result = l0.run(
            lambda: client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}], stream=True
            ),
            plugins=pm,
            retry=l0.Retry(max_retries=3, base_delay=0, max_delay=0),
        )
        with pytest.raises(InvalidStreamError) as caught:
            await result.read()
        message = str(caught.value)
        assert "ChatCompletionChunk" in message
        assert "l0-openai is installed, but its plugin 'openai' is disabled" in message
        assert len(server.requests) == 1  # not retried: no attempt could ever succeed
        await client.close()


async def test_sync_stream_is_refused_with_advice() -> None:
    from l0.testing import ChaosServer

    async with ChaosServer() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        stream = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        with pytest.raises(TypeError, match="AsyncOpenAI"):
            await l0.run(lambda: stream).read()
        client.close()


def chunk(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> Any:
    """A real SDK chunk object, validated by the SDK's own model."""
    return ChatCompletionChunk.model_validate(
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            **extra,
        }
    )


def test_reader_on_sdk_chunks_text_tools_usage() -> None:
    def tool(index: int, **fields: Any) -> dict[str, Any]:
        return {"tool_calls": [{"index": index, **fields}]}

    chunks = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Let me check. "}),
        chunk(tool(0, id="call_a", type="function", function={"name": "f", "arguments": ""})),
        chunk(tool(1, id="call_b", type="function", function={"name": "g", "arguments": '{"b"'})),
        chunk(tool(0, function={"arguments": '{"a": [1,'})),
        chunk(tool(1, function={"arguments": ": true}"})),
        chunk(tool(0, function={"arguments": " 2]}"})),
        chunk({}, "tool_calls"),
        {"id": "c", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}},
    ]
    items = read_all(chunks)
    assert items[0] == "Let me check. "
    calls = [i.data for i in items if isinstance(i, Event) and i.is_tool_call]
    assert calls == [
        {"id": "call_a", "name": "f", "arguments": {"a": [1, 2]}},
        {"id": "call_b", "name": "g", "arguments": {"b": True}},
    ]
    complete = items[-1]
    assert isinstance(complete, Event)
    assert complete.is_complete
    assert complete.usage == {"prompt_tokens": 3, "completion_tokens": 4}
    assert complete.data == {"finish_reason": "tool_calls", "model": "m"}


def test_reader_emits_pending_calls_at_end_and_reads_only_the_first_choice() -> None:
    second_choice = {
        "id": "c",
        "choices": [
            {"index": 0, "delta": {"content": "A"}},
            {"index": 1, "delta": {"content": "B"}},
        ],
    }
    legacy = {
        "choices": [{"index": 0, "delta": {"function_call": {"name": "old", "arguments": "{}"}}}]
    }
    items = read_all(
        [second_choice, legacy, {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}]
    )
    assert items[0] == "A"
    assert [i.data["name"] for i in items if isinstance(i, Event) and i.is_tool_call] == ["old"]


def test_reader_on_legacy_completion_chunks() -> None:
    def piece(text: str, finish_reason: str | None = None) -> dict[str, Any]:
        # As the legacy completions API streams them (the SDK does not validate chunks).
        choice = {"index": 0, "text": text, "finish_reason": finish_reason, "logprobs": None}
        return {"id": "c", "object": "text_completion", "choices": [choice]}

    items = read_all([piece("Once"), piece(" upon"), piece("", "length")])
    assert items[:2] == ["Once", " upon"]
    assert isinstance(items[-1], Event)
    assert items[-1].data == {"finish_reason": "length"}


def test_reader_requires_a_finish_reason_unless_told_otherwise() -> None:
    with pytest.raises(IncompleteStreamError):
        read_all([chunk({"content": "cut"})])
    items = read_all([chunk({"content": "ok"})], ChatChunkReader(require_finish_reason=False))
    assert items[0] == "ok"
    assert isinstance(items[-1], Event)
    assert items[-1].data == {"finish_reason": None}


def test_assembler_errors_and_edge_cases() -> None:
    calls = ToolCallAssembler()
    calls.add(0, "call_1", "empty_args", None)
    calls.add(None, None, None, "")  # continues the latest call
    calls.add(None, "call_2", "no_index", '{"k": "v"}')  # a new id starts a new call
    assert bool(calls.pending)
    assert calls.finish() == [
        {"id": "call_1", "name": "empty_args", "arguments": {}},
        {"id": "call_2", "name": "no_index", "arguments": {"k": "v"}},
    ]
    assert not calls.pending
    calls.add(0, "call_3", "listy", "[1, 2]")
    with pytest.raises(ToolCallError, match=r"'listy'.*not a JSON object"):
        calls.finish()


async def test_adapter_claims_only_openai_streams() -> None:
    adapter = OpenAIAdapter()

    async def plain() -> Any:
        yield "x"

    assert not adapter.detect(plain())
    assert not adapter.detect(object())
