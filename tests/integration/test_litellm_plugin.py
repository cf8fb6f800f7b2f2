"""The ``l0-litellm`` distribution as installed: entry point, helpful errors, categories."""

from __future__ import annotations

import subprocess
import sys
from collections import deque
from typing import Any

import httpx
import pytest
from l0_litellm import LiteLLMAdapter, categorize_litellm_error
from litellm.exceptions import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    BadGatewayError,
    BadRequestError,
    BudgetExceededError,
    ContentPolicyViolationError,
    ContextWindowExceededError,
    InternalServerError,
    MidStreamFallbackError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
    Timeout,
)
from litellm.types.utils import ModelResponseStream

import l0
from l0.errors import InvalidStreamError
from l0.tool_calls import ChatChunkReader
from l0.types import Event

pytestmark = [
    pytest.mark.filterwarnings("ignore:Item.*ReadOnly:UserWarning"),
    pytest.mark.filterwarnings("ignore:Items.*ReadOnly:UserWarning"),
    pytest.mark.filterwarnings("ignore::pydantic.PydanticDeprecatedSince211"),
]

NETWORK, TRANSIENT, FATAL = (
    l0.ErrorCategory.NETWORK,
    l0.ErrorCategory.TRANSIENT,
    l0.ErrorCategory.FATAL,
)


def test_entry_point_registers_the_plugin() -> None:
    infos = {info.name: info for info in l0.build_plugin_manager().list_plugins()}
    assert infos["litellm"].origin == "l0-litellm"
    assert set(infos["litellm"].hooks) == {
        "l0_categorize_error",
        "l0_detect_adapter",
        "l0_wrap_client",
    }


def test_missing_litellm_names_what_to_install() -> None:
    code = (
        "import sys\n"
        "sys.modules['litellm'] = None\n"
        "try:\n"
        "    import l0_litellm\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("l0-litellm needs LiteLLM, which is not installed")
    assert "pip install 'litellm>=1.40'" in done.stdout


async def test_litellm_stream_without_the_plugin_says_what_to_install() -> None:
    import litellm

    from l0.testing import ChaosServer

    pm = l0.build_plugin_manager(blocked=["litellm"])
    async with ChaosServer() as server:
        result = l0.run(
            lambda: litellm.acompletion(
                model="openai/chaos-1",
                api_base=server.base_url,
                api_key="test",
                messages=[{"role": "user", "content": "hi"}],
                stream=True,
                num_retries=0,
                max_retries=0,
            ),
            plugins=pm,
            retry=l0.Retry(max_retries=3, base_delay=0, max_delay=0),
        )
        with pytest.raises(InvalidStreamError) as caught:
            await result.read()
    message = str(caught.value)
    assert "litellm." in message
    assert "l0-litellm is installed, but its plugin 'litellm' is disabled" in message
    assert len(server.requests) == 1


def test_categories_of_litellm_exceptions() -> None:
    args: dict[str, Any] = {"message": "boom", "model": "m", "llm_provider": "openai"}
    dropped = APIConnectionError(**args)
    forbidden = httpx.Response(403, request=httpx.Request("POST", "http://provider.test/v1"))
    cases: list[tuple[BaseException, l0.ErrorCategory | None]] = [
        (Timeout(**args), NETWORK),
        # LiteLLM gives connection errors status 500; they are still network failures.
        (dropped, NETWORK),
        (RateLimitError(**args), TRANSIENT),
        (ServiceUnavailableError(**args), TRANSIENT),
        (InternalServerError(**args), TRANSIENT),
        (BadGatewayError(**args), TRANSIENT),
        (AuthenticationError(**args), FATAL),
        (PermissionDeniedError(**args, response=forbidden), FATAL),
        (NotFoundError(**args), FATAL),
        (BadRequestError(**args), FATAL),
        (ContextWindowExceededError(**args), FATAL),
        (ContentPolicyViolationError(**args), FATAL),
        (BudgetExceededError(current_cost=2.0, max_budget=1.0), FATAL),
        (APIError(status_code=529, **args), TRANSIENT),
        (APIError(status_code=403, **args), FATAL),
        # A stream that failed midway takes the category of what it wraps.
        (MidStreamFallbackError(**args, original_exception=dropped), NETWORK),
        (
            MidStreamFallbackError(**args, original_exception=RateLimitError(**args)),
            TRANSIENT,
        ),
        (MidStreamFallbackError(**args, original_exception=ValueError("x")), TRANSIENT),
        (MidStreamFallbackError(**args), TRANSIENT),
        (ValueError("not ours"), None),
    ]
    for error, expected in cases:
        assert categorize_litellm_error(error) is expected, repr(error)
        if expected is not None:
            assert l0.categorize_error(error) is expected, repr(error)


def test_adapter_detects_only_litellm_streams() -> None:
    adapter = LiteLLMAdapter()
    from litellm.litellm_core_utils.streaming_handler import CustomStreamWrapper

    class Subclass(CustomStreamWrapper):
        pass

    assert adapter.detect(Subclass.__new__(Subclass))
    assert not adapter.detect(object())
    assert not adapter.detect([])


def test_reader_on_litellm_chunk_objects() -> None:
    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> ModelResponseStream:
        fields: dict[str, Any] = {
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
        }
        return ModelResponseStream(**fields)

    def tool(index: int, **fields: Any) -> dict[str, Any]:
        return {"tool_calls": [{"index": index, "type": "function", **fields}]}

    chunks = [
        chunk({"role": "assistant", "content": "Checking "}),
        chunk(tool(0, id="call_1", function={"name": "lookup", "arguments": '{"q":'})),
        chunk(tool(0, function={"arguments": ' "l0"}'})),
        chunk({}, "tool_calls"),
    ]
    reader = ChatChunkReader()
    out: deque[Event] = deque()
    texts = [reader.feed(c, out) for c in chunks]
    reader.end(out)
    assert texts == ["Checking ", None, None, None]
    assert [e.data for e in out if e.is_tool_call] == [
        {"id": "call_1", "name": "lookup", "arguments": {"q": "l0"}}
    ]
    assert out[-1].is_complete
    assert out[-1].data == {"finish_reason": "tool_calls"}
