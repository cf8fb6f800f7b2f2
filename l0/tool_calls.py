"""Turn OpenAI-shaped streaming chunks into L0 events: text, whole tool calls, usage.

The chat-completions chunk shape (``choices[0].delta.content``, ``delta.tool_calls[j]`` with
``index``/``id``/``function.name``/``function.arguments`` fragments, ``choices[0].finish_reason``
and a final ``usage``) is spoken by the OpenAI SDK, LiteLLM and most OpenAI-compatible servers.
This module holds the logic every adapter for such a stream needs, so adapters stay a few lines:

* :class:`ToolCallAssembler` joins tool-call fragments by index into whole calls and parses
  their arguments (``ToolCallError`` naming the tool when they are not a JSON object).
* :class:`ChatChunkReader` reads one chunk at a time (SDK objects or plain dicts) and reports
  text, tool calls, usage and ``finish_reason``.
* :class:`ChunkStream` is the async iterator an adapter's ``wrap`` returns: it pulls provider
  chunks, keeps every one of them in ``raw_chunks`` (what ``result.raw()`` returns), and hands
  the runtime ``str`` tokens and :class:`~l0.types.Event` items.

Only the standard library and ``orjson`` are used, so the kernel can ship it and any adapter may
import it without pulling in an SDK.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

# MalformedChunkError and IncompleteStreamError live in l0.errors with the other L0 errors;
# they are re-exported here, where adapters have always imported them from.
from l0.errors import IncompleteStreamError, MalformedChunkError, RefusalError, ToolCallError
from l0.types import Event, EventType

__all__ = [
    "ChatChunkReader",
    "ChunkReader",
    "ChunkStream",
    "IncompleteStreamError",
    "MalformedChunkError",
    "ToolCallAssembler",
    "get_field",
    "parse_arguments",
    "refusal_error",
    "usage_to_dict",
]

_TOOL_CALL = EventType.TOOL_CALL
_COMPLETE = EventType.COMPLETE
_MISSING: Any = object()


def get_field(obj: Any, name: str) -> Any:
    """Return ``obj[name]`` for a mapping, else ``obj.name``; ``None`` when absent.

    SDKs hand over pydantic objects, raw servers and recordings hand over dicts: one accessor
    reads both.
    """
    # Per chunk this runs a handful of times: exact dicts and attributes first, the (slower)
    # ABC check only for other mappings.
    if type(obj) is dict:
        return obj.get(name)
    value = getattr(obj, name, _MISSING)
    if value is _MISSING:
        return obj.get(name) if isinstance(obj, Mapping) else None
    return value


def usage_to_dict(usage: Any) -> dict[str, Any] | None:
    """Convert a usage object (pydantic model, mapping or plain object) to a plain dict.

    Fields whose value is ``None`` are left out. Returns ``None`` for ``None``.
    """
    if usage is None:
        return None
    if isinstance(usage, Mapping):
        return {str(k): v for k, v in usage.items() if v is not None}
    dump = getattr(usage, "model_dump", None)
    if callable(dump):
        try:
            dumped = dump(exclude_none=True)
        except Exception:  # a provider's model may refuse to dump; fall back to attributes
            dumped = None
        if isinstance(dumped, Mapping):
            return dict(dumped)
    try:
        return {k: v for k, v in vars(usage).items() if not k.startswith("_") and v is not None}
    except TypeError:
        return {"value": usage}


def parse_arguments(arguments: Any, *, name: str, call_id: str) -> dict[str, Any]:
    """Parse a tool call's arguments into a dict.

    Args:
        arguments: The JSON text the model produced (``""`` and ``None`` mean no arguments), or
            an already decoded mapping (some providers send one).
        name: The tool's name, for the error message.
        call_id: The call's id, for the error message.

    Returns:
        The arguments as a dict.

    Raises:
        ToolCallError: the text is not JSON, or not a JSON object.
    """
    if arguments is None:
        return {}
    if isinstance(arguments, Mapping):
        return dict(arguments)
    if not isinstance(arguments, str):
        raise ToolCallError(
            f"tool call {name!r} (id {call_id!r}) has arguments of type "
            f"{type(arguments).__name__}; expected a JSON object as text"
        )
    if not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError as exc:
        raise ToolCallError(
            f"tool call {name!r} (id {call_id!r}) has arguments that are not valid JSON "
            f"({exc}): {arguments[:200]!r}",
            tool_name=name,
            tool_call_id=call_id,
        ) from None
    if not isinstance(value, dict):
        raise ToolCallError(
            f"tool call {name!r} (id {call_id!r}) has arguments that are not a JSON object: "
            f"{arguments[:200]!r}",
            tool_name=name,
            tool_call_id=call_id,
        )
    return value


def refusal_error(refusal: str) -> RefusalError:
    """The :class:`~l0.errors.RefusalError` for a model's whole refusal text."""
    preview = refusal if len(refusal) <= 200 else refusal[:200] + "..."
    return RefusalError(f"the model refused to answer: {preview!r}", refusal=refusal)


@dataclass(slots=True)
class _Partial:
    key: int
    id: str = ""
    name: str = ""
    parts: list[str] = field(default_factory=list)


class ToolCallAssembler:
    """Joins streamed tool-call fragments into whole calls.

    OpenAI streams each call as fragments that share an ``index``: the first carries ``id`` and
    ``function.name``, the following ones pieces of ``function.arguments``. :meth:`add` takes
    the fragments in arrival order; :meth:`finish` returns the whole calls, in the order they
    started, each once, and forgets them.

    Two provider quirks are handled: a fragment whose ``id`` differs from the call being built
    at the same ``index`` starts a new call (some providers number every call 0), and fragments
    without an ``index`` continue the latest call unless they bring a new ``id``. For ``id`` and
    ``name`` the first non-empty value wins, since some providers repeat them in every fragment.

    Example:
        >>> calls = ToolCallAssembler()
        >>> calls.add(0, "call_1", "get_weather", '{"city": ')
        >>> calls.add(0, None, None, '"Paris"}')
        >>> calls.finish()
        [{'id': 'call_1', 'name': 'get_weather', 'arguments': {'city': 'Paris'}}]
    """

    __slots__ = ("_all", "_by_key", "_last", "_next_key")

    def __init__(self) -> None:
        self._all: list[_Partial] = []
        self._by_key: dict[int, _Partial] = {}
        self._last: _Partial | None = None
        # Keys for calls without an index, or displaced by a new id, never clash with real ones.
        self._next_key = -1

    @property
    def pending(self) -> bool:
        """True while fragments were added that :meth:`finish` has not returned yet."""
        return bool(self._all)

    def add(
        self,
        index: int | None,
        call_id: str | None,
        name: str | None,
        arguments: str | None,
    ) -> None:
        """Add one fragment.

        Args:
            index: The fragment's ``index`` (``None`` if the provider sends none).
            call_id: The call id, usually only on the first fragment.
            name: The function name, usually only on the first fragment.
            arguments: The next piece of the arguments' JSON text.
        """
        current = self._last if index is None else self._by_key.get(index)
        if current is None or (call_id and current.id and call_id != current.id):
            if index is None:
                key = self._next_key
                self._next_key -= 1
            else:
                key = index
                if current is not None:
                    # The old call at this index is complete; keep it under a private key.
                    current.key = self._next_key
                    self._next_key -= 1
            current = _Partial(key)
            self._by_key[key] = current
            self._all.append(current)
        self._last = current
        if call_id and not current.id:
            current.id = str(call_id)
        if name and not current.name:
            current.name = str(name)
        if arguments:
            current.parts.append(arguments)

    def finish(self) -> list[dict[str, Any]]:
        """Return every call added so far as ``{"id", "name", "arguments": dict}`` and forget them.

        Raises:
            ToolCallError: a call's arguments are not a JSON object; the message names the tool.
        """
        done, self._all = self._all, []
        self._by_key = {}
        self._last = None
        calls = []
        for partial in done:
            arguments = parse_arguments(
                "".join(partial.parts), name=partial.name, call_id=partial.id
            )
            calls.append({"id": partial.id, "name": partial.name, "arguments": arguments})
        return calls


class ChunkReader(Protocol):
    """Reads provider chunks one at a time for :class:`ChunkStream`."""

    def feed(self, chunk: Any, out: deque[Event]) -> str | None:
        """Read one chunk: return its text (or ``None``), append any other events to ``out``."""
        ...

    def end(self, out: deque[Event]) -> None:
        """The provider stream ended: append the last events (tool calls, ``COMPLETE``)."""
        ...


class ChatChunkReader:
    """Reads OpenAI chat-completion chunks (SDK objects or dicts) into L0 events.

    * Text is ``choices[0].delta.content`` (``choices[0].text`` for the legacy completions API)
      exactly as sent; empty and role-only deltas give no token. Only the first choice is read
      (requests with ``n > 1`` keep the others in ``result.raw()``).
    * ``delta.refusal`` (the model declined to answer) is not text: its pieces are joined and,
      when the stream ends, raised as :class:`~l0.errors.RefusalError` (a ``MODEL`` error, so
      L0 retries within ``Retry.attempts`` and then tries the fallbacks).
    * Tool calls (``delta.tool_calls``, and the legacy ``delta.function_call``) are assembled
      and emitted once each as a ``TOOL_CALL`` event when the choice reports its
      ``finish_reason``, or when the stream ends.
    * ``usage`` (the final chunk of ``stream_options={"include_usage": True}``) and
      ``finish_reason`` (and the answering ``model``) go into the ``COMPLETE`` event appended
      by :meth:`end`.

    Args:
        require_finish_reason: Raise :class:`IncompleteStreamError` when the stream ends without
            any ``finish_reason`` (a connection that was cut cleanly). Turn it off for servers
            that never send one.

    Attributes:
        usage: The last usage reported, as a dict.
        finish_reason: The first choice's ``finish_reason``, once reported.
        model: The model that answered, from the chunk that carried the ``finish_reason``
            (sent as ``model`` in the ``COMPLETE`` event's data).
        tools: The assembler holding tool calls not emitted yet.
    """

    __slots__ = ("_refusal", "finish_reason", "model", "require_finish_reason", "tools", "usage")

    def __init__(self, *, require_finish_reason: bool = True) -> None:
        self.require_finish_reason = require_finish_reason
        self.usage: dict[str, Any] | None = None
        self.finish_reason: str | None = None
        self.model: str | None = None
        self.tools = ToolCallAssembler()
        self._refusal: list[str] = []

    @property
    def refusal(self) -> str | None:
        """The refusal text received so far, ``None`` when the model has not refused."""
        return "".join(self._refusal) if self._refusal else None

    def feed(self, chunk: Any, out: deque[Event]) -> str | None:
        """Read one chunk; return its text, append tool-call events to ``out``."""
        usage = get_field(chunk, "usage")
        if usage is not None:
            self.usage = usage_to_dict(usage)
        choices = get_field(chunk, "choices")
        if not choices:
            return None
        text: str | None = None
        for choice in choices:
            if get_field(choice, "index"):
                continue  # a choice other than the first (n > 1)
            delta = get_field(choice, "delta")
            if delta is not None:
                content = get_field(delta, "content")
                if content and isinstance(content, str):
                    text = content if text is None else text + content
                refusal = get_field(delta, "refusal")
                if refusal and isinstance(refusal, str):
                    self._refusal.append(refusal)
                calls = get_field(delta, "tool_calls")
                if calls:
                    add = self.tools.add
                    for call in calls:
                        function = get_field(call, "function")
                        add(
                            get_field(call, "index"),
                            get_field(call, "id"),
                            get_field(function, "name") if function is not None else None,
                            get_field(function, "arguments") if function is not None else None,
                        )
                legacy = get_field(delta, "function_call")
                if legacy is not None:
                    self.tools.add(
                        0, None, get_field(legacy, "name"), get_field(legacy, "arguments")
                    )
            else:
                # The legacy completions API streams ``choices[0].text`` instead of a delta.
                content = get_field(choice, "text")
                if content and isinstance(content, str):
                    text = content if text is None else text + content
            finish = get_field(choice, "finish_reason")
            if finish:
                self.finish_reason = str(finish)
                # Read once, from the finishing chunk, not from every chunk.
                model = get_field(chunk, "model")
                if model and isinstance(model, str):
                    self.model = model
                self.flush_tool_calls(out)
        return text

    def flush_tool_calls(self, out: deque[Event]) -> None:
        """Append a ``TOOL_CALL`` event for every call assembled so far."""
        if self.tools.pending:
            for call in self.tools.finish():
                out.append(Event(_TOOL_CALL, data=call))

    def end(self, out: deque[Event]) -> None:
        """Append the remaining tool calls and the ``COMPLETE`` event.

        Raises:
            IncompleteStreamError: no ``finish_reason`` arrived and ``require_finish_reason``.
            RefusalError: the model sent a ``refusal``.
        """
        self.flush_tool_calls(out)
        if self.finish_reason is None and self.require_finish_reason:
            raise IncompleteStreamError(
                "the stream ended before the provider sent a finish_reason; the connection "
                "was probably cut and the answer is incomplete"
            )
        refusal = self.refusal
        if refusal is not None:
            raise refusal_error(refusal)
        data: dict[str, Any] = {"finish_reason": self.finish_reason}
        if self.model is not None:
            data["model"] = self.model
        out.append(Event(_COMPLETE, usage=self.usage, data=data))


class ChunkStream(AsyncIterator["Event | str"]):
    """The async iterator an adapter returns: provider chunks in, L0 tokens and events out.

    Every provider chunk, including those that carry no text (role-only, usage, keep-alive), is
    appended to :attr:`raw_chunks`, which the runtime hands out as ``result.raw()``. A chunk
    that the SDK cannot decode as JSON is reported as :class:`MalformedChunkError` (the SDKs
    raise a plain ``json.JSONDecodeError``, which would otherwise look like a programming
    error and not be retried). Any other provider exception propagates unchanged, for L0 to
    categorise.

    Args:
        source: The provider's stream (an async iterator or iterable).
        reader: Turns each chunk into text and events (:class:`ChatChunkReader` or your own).

    Attributes:
        raw_chunks: Every chunk received so far, in order.
    """

    __slots__ = ("_closed", "_done", "_next", "_out", "_reader", "_source", "raw_chunks")

    def __init__(self, source: Any, reader: ChunkReader) -> None:
        self._source = source
        iterator = source if hasattr(type(source), "__anext__") else source.__aiter__()
        self._next = iterator.__anext__
        self._reader = reader
        self._out: deque[Event] = deque()
        self._done = False
        self._closed = False
        self.raw_chunks: list[Any] = []

    def __aiter__(self) -> ChunkStream:
        return self

    async def __anext__(self) -> Event | str:
        out = self._out
        if out:
            return out.popleft()
        feed = self._reader.feed
        raw = self.raw_chunks
        while not self._done:
            try:
                chunk = await self._next()
            except StopAsyncIteration:
                self._done = True
                self._reader.end(out)
                break
            except json.JSONDecodeError as exc:
                self._done = True
                raise MalformedChunkError(
                    f"the provider sent a stream chunk that is not valid JSON ({exc.msg} at "
                    f"position {exc.pos}): {exc.doc[:200]!r}"
                ) from exc
            raw.append(chunk)
            text = feed(chunk, out)
            if text is not None:
                return text
            if out:
                return out.popleft()
        if out:
            return out.popleft()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Close the provider stream (idempotent); the runtime calls it on abort and retry."""
        if self._closed:
            return
        self._closed = True
        self._done = True
        source = self._source
        closer = getattr(source, "aclose", None) or getattr(source, "close", None)
        if closer is not None:
            result = closer()
            if hasattr(result, "__await__"):
                await result
