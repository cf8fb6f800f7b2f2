"""``l0.tool_calls``: assembling streamed tool calls, reading chat chunks, and what L0 reports."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

import l0
from l0 import tool_calls
from l0.errors import (
    IncompleteStreamError,
    L0Error,
    MalformedChunkError,
    RefusalError,
    ToolCallError,
)
from l0.events import ObservabilityEvent, ObservabilityEventType
from l0.tool_calls import ChatChunkReader, ChunkStream, ToolCallAssembler, parse_arguments
from l0.types import ErrorCategory, Event
from tests.runtime_helpers import read_all

FAST = l0.Retry(base_delay=0.0, max_delay=0.0)


# --- chunk builders: plain dicts shaped exactly like OpenAI's chat.completion.chunk ---------------


def delta(payload: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    choice = {"index": 0, "delta": payload, "finish_reason": finish_reason}
    return {"id": "c", "object": "chat.completion.chunk", "choices": [choice]}


def tool(
    index: int | None,
    *,
    id: str | None = None,
    name: str | None = None,
    arguments: str | None = None,
) -> dict[str, Any]:
    call: dict[str, Any] = {"function": {}}
    if index is not None:
        call["index"] = index
    if id is not None:
        call["id"] = id
        call["type"] = "function"
    if name is not None:
        call["function"]["name"] = name
    if arguments is not None:
        call["function"]["arguments"] = arguments
    return delta({"tool_calls": [call]})


def fragments(call_id: str, name: str, arguments: str, size: int, index: int = 0) -> list[Any]:
    """How OpenAI streams one call: id and name with ``""`` arguments, then pieces of JSON."""
    pieces = [arguments[i : i + size] for i in range(0, len(arguments), size)]
    return [
        tool(index, id=call_id, name=name, arguments=""),
        *(tool(index, arguments=piece) for piece in pieces),
    ]


FINISH = delta({}, "tool_calls")


def tool_events(items: Sequence[Event | str]) -> list[dict[str, Any]]:
    return [dict(i.data) for i in items if isinstance(i, Event) and i.is_tool_call]


class DictAdapter:
    """An adapter for lists of chunk dicts, built from the kernel's helpers like the real ones."""

    name = "dict-chunks"

    def detect(self, stream: Any) -> bool:
        return isinstance(stream, ChunkSource)

    def wrap(self, stream: Any) -> ChunkStream:
        return ChunkStream(stream, ChatChunkReader())


class ChunkSource:
    """A provider stream of prepared chunks; ``error`` is raised instead of chunk ``fail_at``."""

    def __init__(
        self, chunks: Sequence[Any], error: BaseException | None = None, fail_at: int = -1
    ) -> None:
        self._chunks = list(chunks)
        self._error = error
        self._fail_at = fail_at
        self.closed = 0

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        for position, chunk in enumerate(self._chunks):
            if position == self._fail_at and self._error is not None:
                raise self._error
            yield chunk

    async def aclose(self) -> None:
        self.closed += 1


class Attempts:
    """A stream factory that answers attempt *i* with ``scripts[i]`` (the last one repeats)."""

    def __init__(self, *scripts: Sequence[Any]) -> None:
        self.scripts = scripts
        self.calls = 0

    def __call__(self) -> ChunkSource:
        script = self.scripts[min(self.calls, len(self.scripts) - 1)]
        self.calls += 1
        return ChunkSource(script)


# --- the assembler --------------------------------------------------------------------------------


def test_arguments_split_across_many_fragments_arrive_whole() -> None:
    arguments = json.dumps({"city": "Paris", "days": [1, 2, 3], "note": 'say "hi"\n'})
    calls = ToolCallAssembler()
    calls.add(0, "call_1", "forecast", "")
    for char in arguments:  # one character per fragment, the worst case
        calls.add(0, None, None, char)
    assert calls.finish() == [
        {
            "id": "call_1",
            "name": "forecast",
            "arguments": {"city": "Paris", "days": [1, 2, 3], "note": 'say "hi"\n'},
        }
    ]


def test_parallel_calls_are_joined_by_index_in_the_order_they_started() -> None:
    calls = ToolCallAssembler()
    calls.add(1, "call_b", "second", '{"n"')
    calls.add(0, "call_a", "first", "")
    calls.add(2, "call_c", "third", "{}")
    calls.add(0, None, None, '{"n": 1')
    calls.add(1, None, None, ": 2}")
    calls.add(0, None, None, "}")
    assert calls.finish() == [
        {"id": "call_b", "name": "second", "arguments": {"n": 2}},
        {"id": "call_a", "name": "first", "arguments": {"n": 1}},
        {"id": "call_c", "name": "third", "arguments": {}},
    ]


def test_id_and_name_come_from_the_first_fragment_and_are_not_repeated() -> None:
    calls = ToolCallAssembler()
    calls.add(0, "call_1", "lookup", '{"q": ')
    calls.add(0, None, None, '"a"}')
    # Providers that repeat id and name in every fragment: the first value wins, no duplication.
    calls.add(1, "call_2", "lookup", '{"q": ')
    calls.add(1, "call_2", "lookup", '"b"}')
    assert calls.finish() == [
        {"id": "call_1", "name": "lookup", "arguments": {"q": "a"}},
        {"id": "call_2", "name": "lookup", "arguments": {"q": "b"}},
    ]


def test_a_new_id_at_the_same_index_starts_a_new_call() -> None:
    calls = ToolCallAssembler()
    calls.add(0, "call_1", "a", '{"x": 1}')
    calls.add(0, "call_2", "b", '{"y": 2}')  # providers that number every call 0
    calls.add(None, None, None, "")  # no index: continues the latest call
    assert [(c["id"], c["arguments"]) for c in calls.finish()] == [
        ("call_1", {"x": 1}),
        ("call_2", {"y": 2}),
    ]


def test_finish_forgets_the_calls_it_returned() -> None:
    calls = ToolCallAssembler()
    pending = [calls.pending]
    assert calls.finish() == []
    calls.add(0, "call_1", "f", "{}")
    pending.append(calls.pending)
    assert len(calls.finish()) == 1
    pending.append(calls.pending)
    assert pending == [False, True, False]
    assert calls.finish() == []


def test_invalid_json_names_the_tool_the_call_and_previews_the_arguments() -> None:
    calls = ToolCallAssembler()
    calls.add(0, "call_9", "get_weather", '{"city": "Par')
    with pytest.raises(ToolCallError) as caught:
        calls.finish()
    error = caught.value
    message = str(error)
    assert "'get_weather'" in message
    assert "'call_9'" in message
    assert "not valid JSON" in message
    assert '{"city": "Par' in message
    assert error.details == {"tool_name": "get_weather", "tool_call_id": "call_9"}
    assert error.category is ErrorCategory.MODEL


def test_the_preview_of_long_arguments_is_cut() -> None:
    long = '{"text": "' + "x" * 5000
    with pytest.raises(ToolCallError) as caught:
        parse_arguments(long, name="write", call_id="c1")
    assert len(str(caught.value)) < 400
    assert "x" * 150 in str(caught.value)


@pytest.mark.parametrize("arguments", ["[1, 2]", '"text"', "42", "null", "true"])
def test_arguments_that_are_not_an_object_are_refused(arguments: str) -> None:
    with pytest.raises(ToolCallError, match=r"'tool' \(id 'c1'\).*not a JSON object"):
        parse_arguments(arguments, name="tool", call_id="c1")


def test_parse_arguments_accepts_empty_text_and_decoded_mappings() -> None:
    assert parse_arguments(None, name="f", call_id="c") == {}
    assert parse_arguments("", name="f", call_id="c") == {}
    assert parse_arguments("  \n", name="f", call_id="c") == {}
    assert parse_arguments({"a": 1}, name="f", call_id="c") == {"a": 1}
    with pytest.raises(ToolCallError, match="type int"):
        parse_arguments(7, name="f", call_id="c")


# --- the chat chunk reader ------------------------------------------------------------------------


def test_an_empty_first_fragment_never_yields_an_empty_call() -> None:
    chunks = fragments("call_1", "search", '{"query": "l0", "limit": 3}', size=4)
    out: deque[Event] = deque()
    reader = ChatChunkReader()
    for chunk in chunks:
        assert reader.feed(chunk, out) is None
        assert not out, "a call must not be reported before it is complete"
    reader.feed(FINISH, out)
    assert [e.data for e in out] == [
        {"id": "call_1", "name": "search", "arguments": {"query": "l0", "limit": 3}}
    ]


def test_reader_reports_parallel_calls_once_each_with_text_and_finish_reason() -> None:
    chunks = [
        delta({"role": "assistant", "content": ""}),
        delta({"content": "Checking both."}),
        tool(0, id="call_a", name="weather", arguments=""),
        tool(1, id="call_b", name="time", arguments=""),
        tool(1, arguments='{"tz": '),
        tool(0, arguments='{"city": "Oslo"}'),
        tool(1, arguments='"CET"}'),
        FINISH,
    ]
    items = read_all(chunks)
    assert items[0] == "Checking both."
    assert tool_events(items) == [
        {"id": "call_a", "name": "weather", "arguments": {"city": "Oslo"}},
        {"id": "call_b", "name": "time", "arguments": {"tz": "CET"}},
    ]
    complete = items[-1]
    assert isinstance(complete, Event)
    assert complete.is_complete
    assert complete.data == {"finish_reason": "tool_calls"}


def test_reader_reports_a_refusal_as_an_error_with_the_whole_text() -> None:
    chunks = [
        delta({"role": "assistant", "content": None, "refusal": ""}),
        delta({"refusal": "I can't"}),
        delta({"refusal": " help with that."}),
        delta({}, "stop"),
    ]
    reader = ChatChunkReader()
    with pytest.raises(RefusalError) as caught:
        read_all(chunks, reader)
    assert caught.value.refusal == "I can't help with that."
    assert reader.refusal == "I can't help with that."
    assert "I can't help with that." in str(caught.value)
    assert caught.value.category is ErrorCategory.MODEL


def test_reader_raises_incomplete_stream_without_a_finish_reason() -> None:
    with pytest.raises(IncompleteStreamError, match="finish_reason"):
        read_all([*fragments("call_1", "f", "{}", size=1)])


# --- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error_type", "code", "category"),
    [
        (MalformedChunkError, "malformed_chunk", ErrorCategory.TRANSIENT),
        (IncompleteStreamError, "incomplete_stream", ErrorCategory.NETWORK),
        (RefusalError, "refusal", ErrorCategory.MODEL),
        (ToolCallError, "tool_call_invalid", ErrorCategory.MODEL),
    ],
)
def test_stream_errors_are_l0_errors_with_code_category_and_hint(
    error_type: type[L0Error], code: str, category: ErrorCategory
) -> None:
    assert issubclass(error_type, L0Error)
    assert error_type.code == code
    assert error_type.category is category
    assert error_type.hint
    assert error_type.__name__ in l0.errors.__all__
    assert l0.errors.categorize_error(error_type.__new__(error_type)) is category


def test_tool_calls_still_exports_the_moved_errors() -> None:
    assert tool_calls.MalformedChunkError is MalformedChunkError
    assert tool_calls.IncompleteStreamError is IncompleteStreamError
    assert {"MalformedChunkError", "IncompleteStreamError"} <= set(tool_calls.__all__)


# --- the chunk stream -----------------------------------------------------------------------------


async def test_chunk_stream_keeps_every_raw_chunk_and_closes_once() -> None:
    chunks = [delta({"role": "assistant"}), delta({"content": "Hi"}), delta({}, "stop")]
    source = ChunkSource(chunks)
    stream = ChunkStream(source, ChatChunkReader())
    items = [item async for item in stream]
    assert items[0] == "Hi"
    last = items[-1]
    assert isinstance(last, Event)
    assert last.is_complete
    assert stream.raw_chunks == chunks
    await stream.aclose()
    await stream.aclose()
    assert source.closed == 1


async def test_chunk_stream_reports_undecodable_chunks_as_malformed() -> None:
    broken = json.JSONDecodeError("Expecting value", "{not json", 1)
    stream = ChunkStream(ChunkSource([delta({"content": "a"})] * 3, broken, 1), ChatChunkReader())
    assert await stream.__anext__() == "a"
    with pytest.raises(MalformedChunkError, match="not valid JSON") as caught:
        await stream.__anext__()
    assert caught.value.__cause__ is broken
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()


# --- through l0.run: callbacks, observability events, retries -------------------------------------


async def test_on_tool_call_and_tool_requested_fire_once_per_whole_call() -> None:
    chunks = [
        *fragments("call_a", "weather", '{"city": "Oslo", "days": 3}', size=3, index=0),
        *fragments("call_b", "time", '{"tz": "CET"}', size=2, index=1),
        FINISH,
    ]
    seen: list[tuple[str, str, dict[str, Any]]] = []
    events: list[ObservabilityEvent] = []
    result = l0.run(
        Attempts(chunks),
        adapter=DictAdapter(),
        retry=FAST,
        on_tool_call=lambda name, call_id, args: seen.append((name, call_id, args)),
        on_event=events.append,
    )
    consumer = [event async for event in result]
    await result.wait_callbacks()
    assert seen == [
        ("weather", "call_a", {"city": "Oslo", "days": 3}),
        ("time", "call_b", {"tz": "CET"}),
    ]
    requested = [e for e in events if e.type is ObservabilityEventType.TOOL_REQUESTED]
    assert [(e["tool_name"], e["tool_call_id"], e["arguments"]) for e in requested] == seen
    assert [e.data["id"] for e in consumer if e.is_tool_call] == ["call_a", "call_b"]


async def test_a_completion_with_only_tool_calls_is_an_answer() -> None:
    factory = Attempts([*fragments("call_1", "f", '{"a": 1}', size=2), FINISH])
    result = l0.run(factory, adapter=DictAdapter(), retry=FAST)
    assert await result.read() == ""
    assert result.errors == []
    assert factory.calls == 1
    assert result.state.tool_calls == [{"id": "call_1", "name": "f", "arguments": {"a": 1}}]
    assert result.state.finish_reason == "tool_calls"


async def test_broken_arguments_are_retried_and_never_reach_on_tool_call() -> None:
    broken = [*fragments("call_1", "f", '{"a": ', size=3), FINISH]
    good = [*fragments("call_2", "f", '{"a": 2}', size=3), FINISH]
    factory = Attempts(broken, good)
    seen: list[tuple[str, str, dict[str, Any]]] = []
    events: list[ObservabilityEvent] = []
    result = l0.run(
        factory,
        adapter=DictAdapter(),
        retry=FAST,
        on_tool_call=lambda name, call_id, args: seen.append((name, call_id, args)),
        on_event=events.append,
    )
    await result.read()
    await result.wait_callbacks()
    assert seen == [("f", "call_2", {"a": 2})]
    assert [type(e.error) for e in result.errors] == [ToolCallError]
    assert [e.category for e in result.errors] == [ErrorCategory.MODEL]
    requested = [e for e in events if e.type is ObservabilityEventType.TOOL_REQUESTED]
    assert [e["tool_call_id"] for e in requested] == ["call_2"]


async def test_a_refusal_is_retried_as_a_model_error_then_falls_back() -> None:
    refusal = [delta({"refusal": "No."}), delta({}, "stop")]
    answer = [delta({"content": "Yes."}), delta({}, "stop")]
    primary, fallback = Attempts(refusal), Attempts(answer)
    result = l0.run(
        primary,
        fallbacks=[fallback],
        adapter=DictAdapter(),
        retry=l0.Retry(attempts=1, base_delay=0.0, max_delay=0.0),
    )
    assert await result.read() == "Yes."
    assert (primary.calls, fallback.calls) == (2, 1)
    assert [type(e.error) for e in result.errors] == [RefusalError, RefusalError]
    assert all(e.category is ErrorCategory.MODEL for e in result.errors)
