"""The native transport: L0 reads the SSE bytes of an ``openai.AsyncStream`` itself.

The SDK has already built and sent the request (auth, base URL, headers, Azure and organisation
options, timeouts) and mapped an error status to its exception before it returned the stream;
what is left is the body. The SDK would decode every event into a pydantic chunk object (about
100 µs each); here the ``data:`` bytes go to ``orjson`` and the plain dicts to the same readers
the SDK objects would go to. The SDK's chunk objects are built only when ``result.raw()`` asks.

What stays exactly the SDK's: transport failures while reading become ``APITimeoutError`` /
``APIConnectionError`` with the request; an ``{"error": ...}`` event raises ``openai.APIError``
with the same message and body; ``[DONE]`` ends the stream and the rest of an HTTP/1.1 body is
drained (for at most 0.1 s, as the SDK does) so the connection can be reused. A stream the
native path cannot read exactly (a custom SSE decoder, ``_strict_response_validation``, a
non-legacy stream mode, a body already being read) is left to the SDK's own iterator
(:func:`can_read_natively`).
"""

from __future__ import annotations

import asyncio
import inspect
import sys
from collections import deque
from typing import Any

import orjson

from l0.errors import MalformedChunkError
from l0.tool_calls import ChunkReader
from l0.types import Event, EventType
from l0_openai.raw import RawChunks
from l0_openai.sse import SSEDecoder

__all__ = ["NativeStream", "RawChunks", "can_read_natively", "plain_text"]


def can_read_natively(stream: Any) -> bool:
    """True when :class:`NativeStream` reads ``stream`` exactly as the SDK's iterator would."""
    streaming = sys.modules.get("openai._streaming")
    if streaming is None or type(getattr(stream, "_decoder", None)) is not streaming.SSEDecoder:
        return False
    client = getattr(stream, "_client", None)
    if client is None or getattr(client, "_strict_response_validation", True):
        return False
    options = getattr(stream, "_options", None)
    if options is not None and (
        getattr(options, "stream_mode", "legacy") != "legacy"
        or getattr(options, "synthesize_event_and_data", False)
    ):
        return False
    response = getattr(stream, "response", None)
    if response is None or not _not_started(getattr(stream, "_iterator", None)):
        return False
    if getattr(response, "is_stream_consumed", True) is False:
        return getattr(response, "is_closed", True) is False
    # A body read whole before the stream was handed over (mock transports, some proxies'
    # clients) is still readable; one someone started streaming and closed is not.
    try:
        response.content  # noqa: B018 (raises when the body was never read)
    except Exception:
        return False
    return True


def _not_started(iterator: Any) -> bool:
    """True when the SDK's own async generator has not run yet (nobody iterated the stream)."""
    state = getattr(inspect, "getasyncgenstate", None)
    if state is not None:
        try:
            return bool(state(iterator) == inspect.AGEN_CREATED)  # type: ignore[attr-defined,unused-ignore]
        except (TypeError, AttributeError):
            return False
    frame = getattr(iterator, "ag_frame", None)
    # Before its first step a generator's frame has run no instruction (f_lasti 0, or -1).
    return frame is not None and frame.f_lasti <= 0


_NOT_PLAIN: Any = object()


def plain_text(chunk: Any) -> Any:
    """The text of a chat chunk that carries only text, else a sentinel (not ``None``).

    Most chunks of an answer are ``{"choices": [{"index": 0, "delta": {"content": "..."},
    "finish_reason": null}]}``: they change nothing but the text, so they skip the general
    reader. Anything else (usage, a finish reason, tool calls, a refusal, a role, more choices)
    goes to the reader. Returns ``""`` for empty content.
    """
    if type(chunk) is not dict or chunk.get("usage") is not None:
        return _NOT_PLAIN
    choices = chunk.get("choices")
    if type(choices) is not list or len(choices) != 1:
        return _NOT_PLAIN
    choice = choices[0]
    if type(choice) is not dict or choice.get("index") or choice.get("finish_reason") is not None:
        return _NOT_PLAIN
    delta = choice.get("delta")
    if type(delta) is not dict or len(delta) != 1:
        return _NOT_PLAIN
    content = delta.get("content")
    return content if type(content) is str else _NOT_PLAIN


def _transport_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """The exceptions the SDK maps to ``APITimeoutError`` and ``APIConnectionError``."""
    try:
        from openai._httpx2 import (  # type: ignore[import-not-found,unused-ignore]
            request_exceptions,
            timeout_exceptions,
        )
    except ImportError:  # SDKs built on httpx
        import httpx

        return (httpx.TimeoutException,), (httpx.RequestError,)
    return tuple(timeout_exceptions()), tuple(request_exceptions())


_DRAIN_SECONDS = 0.1
"""How long the rest of an HTTP/1.1 body after ``[DONE]`` is read (the SDK's own limit) so
the connection can be reused; a server still sending after that gets its connection closed."""


class NativeStream:
    """The async iterator of L0 tokens and events over an ``openai.AsyncStream``'s body.

    The task that iterates it owns the body's byte iterator: every way the stream ends
    (``[DONE]``, the body's end, a malformed event, an error event, a transport error) closes
    that iterator and the response from that task, at once, rather than leaving httpx's nested
    generators to the garbage collector. :meth:`aclose` from another task while a read is in
    progress closes only the response, which ends the read; the iterating task then finishes.

    Args:
        stream: The SDK stream, not yet iterated (see :func:`can_read_natively`).
        reader: Turns each decoded event (a dict) into text and events.
        keep_raw: Keep what ``result.raw()`` needs to build the SDK's chunk objects (see
            :class:`~l0_openai.raw.RawChunks`); ``False`` keeps nothing and ``raw()`` returns
            an empty list.

    Attributes:
        raw_chunks: The SDK chunk objects received so far, built on first access.
    """

    __slots__ = (
        "_closed",
        "_decoder",
        "_done",
        "_events",
        "_fed",
        "_keep",
        "_next_read",
        "_out",
        "_pos",
        "_reader",
        "_reading",
        "_reads",
        "_reads_closed",
        "_request_errors",
        "_response",
        "_stream",
        "_timeout_errors",
        "raw_chunks",
    )

    def __init__(self, stream: Any, reader: ChunkReader, *, keep_raw: bool = True) -> None:
        self._stream = stream
        response = self._response = stream.response
        self._reads = response.aiter_bytes()
        self._next_read = self._reads.__anext__
        self._reading = False
        self._reads_closed = False
        self._decoder = SSEDecoder()
        self._events: list[tuple[str | None, bytes]] = []
        self._pos = 0
        self._fed = False
        self._reader = reader
        self._out: deque[Event] = deque()
        self._done = False
        self._closed = False
        self._timeout_errors, self._request_errors = _transport_errors()
        self.raw_chunks = RawChunks(stream)
        self._keep = keep_raw

    def __aiter__(self) -> NativeStream:
        return self

    async def __anext__(self) -> Event | str:
        out = self._out
        if out:
            return out.popleft()
        feed = self._reader.feed
        raw = self.raw_chunks if self._keep else None
        loads = orjson.loads
        plain, not_plain = plain_text, _NOT_PLAIN
        try:
            while not self._done:
                events = self._events
                pos = self._pos
                if pos == len(events):
                    await self._read()
                    continue
                event, data = events[pos]
                self._pos = pos + 1
                if data.startswith(b"[DONE]"):
                    self._done = True
                    if self._response.http_version == "HTTP/1.1":
                        await self._drain()
                    await self._release()
                    self._reader.end(out)
                    break
                try:
                    chunk = loads(data)
                except orjson.JSONDecodeError as exc:
                    raise MalformedChunkError(
                        f"the provider sent a stream chunk that is not valid JSON ({exc}): "
                        f"{data[:200]!r}"
                    ) from exc
                if event is not None and event.startswith("thread."):
                    chunk = self._assistants_event(event, chunk)
                elif type(chunk) is dict and chunk.get("error"):
                    raise self._api_error(chunk["error"])
                if self._fed:
                    if (
                        raw is not None
                        and data.startswith(raw.prefix)
                        and data.endswith(raw.suffix)
                        and data[raw._before] != 92  # the closing quote is not escaped
                    ):
                        # The template chunk around another string (RawChunks.add_text's
                        # common case, inlined: once per token, and it spares plain_text).
                        try:
                            text = chunk["choices"][0]["delta"]["content"]
                        except (KeyError, IndexError, TypeError):
                            text = None
                        if type(text) is str and len(data) - raw._fixed == len(text):
                            raw._entries.append(text)
                            if text:
                                return text
                            continue
                    text = plain(chunk)
                    if text is not not_plain:
                        if raw is not None:
                            raw.add_text(data, chunk, text)
                        if text:
                            return text  # type: ignore[no-any-return]
                        continue
                else:
                    # The first event goes to the reader, which picks chat or Responses from it.
                    self._fed = True
                if raw is not None:
                    raw.add(data)
                text = feed(chunk, out)
                if text is not None:
                    return text
                if out:
                    return out.popleft()
        except Exception:
            # A malformed or error event, a transport error: close everything now. (A
            # cancelled read ended httpx's generators with the CancelledError; the runtime
            # then closes the response through aclose().)
            self._done = True
            await self._release()
            raise
        if out:
            return out.popleft()
        raise StopAsyncIteration

    async def _read(self) -> None:
        self._reading = True
        try:
            chunk = await self._next_read()
        except StopAsyncIteration:
            self._reading = False
            await self._end()
            return
        except self._timeout_errors as exc:
            import openai

            raise openai.APITimeoutError(request=self._response.request) from exc
        except self._request_errors as exc:
            import openai

            raise openai.APIConnectionError(request=self._response.request) from exc
        finally:
            self._reading = False
        if self._done:
            # aclose() ran in another task during the read: close the byte iterator here.
            await self._release()
            return
        self._events = self._decoder.feed(chunk)
        self._pos = 0

    async def _end(self) -> None:
        """The body ended without ``[DONE]``; an event without its blank line still counts."""
        self._done = True
        last = self._decoder.finish()
        if last is not None:
            try:
                loads = orjson.loads(last[1])
            except orjson.JSONDecodeError:
                # Cut in the middle of an event: the reader reports the stream incomplete.
                loads = None
            if loads is not None and not last[1].startswith(b"[DONE]"):
                if type(loads) is dict and loads.get("error"):
                    raise self._api_error(loads["error"])
                if self._keep:
                    self.raw_chunks.add(last[1])
                self._events = []
                self._pos = 0
                text = self._reader.feed(loads, self._out)
                if text is not None:
                    self._out.appendleft(_token(text))
        await self._release()
        self._reader.end(self._out)

    def _api_error(self, error: Any) -> BaseException:
        import openai

        message = error.get("message") if isinstance(error, dict) else None
        if not message or not isinstance(message, str):
            message = "An error occurred during streaming"
        self._done = True
        return openai.APIError(message=message, request=self._response.request, body=error)

    def _assistants_event(self, event: str, data: Any) -> Any:
        if event == "error" and isinstance(data, dict) and data.get("error"):
            raise self._api_error(data["error"])
        return {"data": data, "event": event}

    async def _drain(self) -> None:
        """Read the body to its end (HTTP/1.1 reuses the connection only then), briefly.

        Through the same byte iterator, so httpx's generators all finish by themselves
        instead of being closed half-way (the SDK drains with a second iterator and leaves
        the first to the garbage collector).
        """
        self._reading = True
        try:
            async with asyncio.timeout(_DRAIN_SECONDS):
                async for _ in self._reads:
                    pass
        except TimeoutError:
            pass  # the response is closed next, and with it the connection
        except self._request_errors:
            pass  # a completed answer stays completed
        finally:
            self._reading = False

    async def _release(self) -> None:
        """Close the byte iterator (unless a read is in progress) and the response."""
        try:
            if not self._reading and not self._reads_closed:
                self._reads_closed = True
                # Suspended at a ``yield`` (or never started): closing it runs httpx's own
                # cleanup in order, outer generator first, each closing the one it reads.
                await self._reads.aclose()
        finally:
            if not self._closed:
                self._closed = True
                await self._response.aclose()

    async def aclose(self) -> None:
        """Close the HTTP response (idempotent); the runtime calls it on abort and retry.

        From another task while this stream's task waits for bytes, only the response is
        closed (the byte iterator is running there and cannot be closed from here): the wait
        ends with a transport error, and the iterating task ends its iterator itself.
        """
        self._done = True
        await self._release()


def _token(text: str) -> Event:
    return Event(EventType.TOKEN, text=text)
