"""The adapter for ``openai.AsyncStream``: chat-completion chunks and Responses events."""

from __future__ import annotations

import logging
import sys
import threading
from collections import deque
from typing import Any, cast

from l0.errors import InvalidStreamError
from l0.tool_calls import (
    ChatChunkReader,
    ChunkStream,
    IncompleteStreamError,
    get_field,
    parse_arguments,
    refusal_error,
    usage_to_dict,
)
from l0.types import Event, EventType

__all__ = ["OpenAIAdapter", "ResponsesReader"]

log = logging.getLogger("l0.openai")

_TOOL_CALL = EventType.TOOL_CALL
_COMPLETE = EventType.COMPLETE

# Responses ``incomplete_details.reason`` in the vocabulary of chat completions' finish_reason,
# so that ``retry_on_length`` and ``state.finish_reason`` read the same for both APIs.
_INCOMPLETE_REASONS = {"max_output_tokens": "length", "content_filter": "content_filter"}


def _model_of(response: Any) -> str | None:
    model = get_field(response, "model")
    return model if isinstance(model, str) and model else None


class ResponsesReader:
    """Reads Responses API stream events (``client.responses.create(stream=True)``).

    * ``response.output_text.delta`` events are the text tokens, exactly as sent.
    * A function call is emitted once, as a ``TOOL_CALL`` event with its whole arguments, when
      its ``response.output_item.done`` event arrives (calls that only appear in the final
      ``response.completed`` event are emitted then). ``id`` is the call's ``call_id``, the id
      a ``function_call_output`` must quote.
    * ``response.completed`` gives usage, the answering ``model`` and ``finish_reason``
      ``"stop"`` (``"tool_calls"`` when the answer called functions); ``response.incomplete``
      gives ``"length"`` for ``max_output_tokens``, ``"content_filter"``, or the reason as sent.
    * ``response.failed`` and ``error`` events raise ``openai.APIError`` with the event's
      ``code`` (L0 retries ``server_error``/``rate_limit_exceeded``/unknown codes and stops on
      the others; see ``l0_openai.categorize_openai_error``).
    * A refusal (``response.refusal.delta``/``.done`` events, or a ``refusal`` part in the
      final response) is not text: once the response finishes it is raised as
      :class:`~l0.errors.RefusalError`, exactly as for chat completions.

    Args:
        stream: The SDK stream, whose HTTP request is attached to the errors raised.
        require_completion: Raise ``IncompleteStreamError`` when the stream ends before
            ``response.completed``/``response.incomplete`` (the connection was cut).
    """

    __slots__ = (
        "_emitted",
        "_ended",
        "_refusal",
        "_stream",
        "finish_reason",
        "model",
        "require_completion",
        "usage",
    )

    def __init__(self, stream: Any = None, *, require_completion: bool = True) -> None:
        self._stream = stream
        self.require_completion = require_completion
        self.usage: dict[str, Any] | None = None
        self.finish_reason: str | None = None
        self.model: str | None = None
        self._emitted: set[str] = set()
        self._ended = False
        # Pieces of the refusal, keyed by (output item, content part) so the ``.done`` event's
        # whole text replaces its deltas instead of doubling them.
        self._refusal: dict[tuple[Any, Any], str] = {}

    def feed(self, chunk: Any, out: deque[Event]) -> str | None:
        """Read one event; return its text, append tool-call events to ``out``."""
        kind = get_field(chunk, "type")
        if kind == "response.output_text.delta":
            delta = get_field(chunk, "delta")
            return delta if isinstance(delta, str) and delta else None
        if kind == "response.refusal.delta":
            key = (get_field(chunk, "item_id"), get_field(chunk, "content_index"))
            self._refusal[key] = self._refusal.get(key, "") + str(get_field(chunk, "delta") or "")
        elif kind == "response.refusal.done":
            key = (get_field(chunk, "item_id"), get_field(chunk, "content_index"))
            self._refusal[key] = str(get_field(chunk, "refusal") or self._refusal.get(key, ""))
        elif kind == "response.output_item.done":
            self._emit(get_field(chunk, "item"), out)
        elif kind == "response.completed":
            response = get_field(chunk, "response")
            for item in get_field(response, "output") or ():
                self._emit(item, out)
            self.usage = usage_to_dict(get_field(response, "usage"))
            self.model = _model_of(response)
            self.finish_reason = "tool_calls" if self._emitted else "stop"
            self._ended = True
        elif kind == "response.incomplete":
            response = get_field(chunk, "response")
            for item in get_field(response, "output") or ():
                self._emit(item, out)
            self.usage = usage_to_dict(get_field(response, "usage"))
            self.model = _model_of(response)
            reason = get_field(get_field(response, "incomplete_details"), "reason")
            self.finish_reason = _INCOMPLETE_REASONS.get(reason, reason or "incomplete")
            self._ended = True
        elif kind == "response.failed":
            response = get_field(chunk, "response")
            error = get_field(response, "error")
            raise self._error(
                get_field(error, "code"),
                get_field(error, "message") or "the response failed",
                get_field(error, "type"),
            )
        elif kind == "error":
            raise self._error(
                get_field(chunk, "code"),
                get_field(chunk, "message") or "the stream reported an error",
                None,
            )
        return None

    def _emit(self, item: Any, out: deque[Event]) -> None:
        if item is None:
            return
        kind = get_field(item, "type")
        if kind == "message":
            # Servers that skip the refusal events still put the refusal in the message.
            item_id = get_field(item, "id")
            for index, part in enumerate(get_field(item, "content") or ()):
                if get_field(part, "type") == "refusal":
                    self._refusal.setdefault(
                        (item_id, index), str(get_field(part, "refusal") or "")
                    )
            return
        if kind != "function_call":
            return
        call_id = str(get_field(item, "call_id") or get_field(item, "id") or "")
        if call_id in self._emitted:
            return
        self._emitted.add(call_id)
        name = str(get_field(item, "name") or "")
        arguments = parse_arguments(get_field(item, "arguments"), name=name, call_id=call_id)
        out.append(Event(_TOOL_CALL, data={"id": call_id, "name": name, "arguments": arguments}))

    def _error(self, code: Any, message: str, kind: Any) -> BaseException:
        import openai

        request = get_field(get_field(self._stream, "response"), "request")
        body = {"code": code, "message": message, "type": kind}
        # The same exception type the SDK raises for an error inside a chat-completions
        # stream, so one ``except openai.APIError`` and one categorisation cover both APIs.
        return openai.APIError(f"{message} (code: {code})", cast(Any, request), body=body)

    def end(self, out: deque[Event]) -> None:
        """Append the ``COMPLETE`` event.

        Raises:
            IncompleteStreamError: the stream stopped before the response finished.
            RefusalError: the model refused.
        """
        if not self._ended and self.require_completion:
            raise IncompleteStreamError(
                "the Responses stream ended before response.completed; the connection was "
                "probably cut and the answer is incomplete"
            )
        refusal = "".join(self._refusal.values())
        if refusal:
            raise refusal_error(refusal)
        data: dict[str, Any] = {"finish_reason": self.finish_reason}
        if self.model is not None:
            data["model"] = self.model
        out.append(Event(_COMPLETE, usage=self.usage, data=data))


class _SniffingReader:
    """Picks the chat or Responses reader from the first event's shape.

    ``openai.AsyncStream`` is the same class for both APIs; Responses events have a ``type``
    (``"response.created"`` …, or ``"error"``) where chat chunks have ``object`` and
    ``choices``, so the first event decides, for the whole stream.
    """

    __slots__ = ("_reader", "_require", "_stream")

    def __init__(self, stream: Any, require: bool) -> None:
        self._stream = stream
        self._require = require
        self._reader: ChatChunkReader | ResponsesReader | None = None

    def feed(self, chunk: Any, out: deque[Event]) -> str | None:
        reader = self._reader
        if reader is None:
            kind = get_field(chunk, "type")
            if isinstance(kind, str) and (kind.startswith("response.") or kind == "error"):
                reader = ResponsesReader(self._stream, require_completion=self._require)
            else:
                reader = ChatChunkReader(require_finish_reason=self._require)
            self._reader = reader
        return reader.feed(chunk, out)

    def end(self, out: deque[Event]) -> None:
        reader = self._reader
        if reader is None:
            # No event at all: an empty answer (zero output), unless the connection was cut,
            # which the SDK reports itself.
            out.append(Event(_COMPLETE, data={"finish_reason": None}))
            return
        reader.end(out)


class OpenAIAdapter:
    """L0 adapter for ``openai.AsyncStream`` (chat completions and Responses streams).

    Detection never imports ``openai``: a stream can only be an SDK object if the SDK is
    already imported. ``wrap`` returns a :class:`~l0.tool_calls.ChunkStream`, so
    ``result.raw()`` gives the SDK's own chunk objects (``ChatCompletionChunk`` or Responses
    events), including role-only and usage chunks.

    Args:
        require_finish_reason: Treat a stream that ends without a ``finish_reason`` (chat) or
            without ``response.completed`` (Responses) as a cut connection and retry it.
        warn_sdk_retries: Log a warning, once per adapter, when the stream's client has
            ``max_retries > 0``: the SDK then retries inside each L0 attempt, so retries
            multiply (create the client with ``max_retries=0``, or use ``l0.wrap(client)``).
    """

    name = "openai"

    def __init__(self, *, require_finish_reason: bool = True, warn_sdk_retries: bool = True):
        self.require_finish_reason = require_finish_reason
        self.warn_sdk_retries = warn_sdk_retries
        self._warned = False
        self._lock = threading.Lock()

    def detect(self, stream: Any) -> bool:
        """True for ``openai.AsyncStream`` and ``openai.Stream`` (refused in :meth:`wrap`)."""
        openai = sys.modules.get("openai")
        if openai is None:
            return False
        return isinstance(stream, (openai.AsyncStream, openai.Stream))

    def wrap(self, stream: Any) -> ChunkStream:
        """Return the iterator of L0 tokens and events for ``stream``.

        Raises:
            InvalidStreamError: ``stream`` is a synchronous ``openai.Stream``.
        """
        import openai

        if isinstance(stream, openai.Stream):
            stream.close()
            raise InvalidStreamError(
                "got a synchronous openai.Stream; L0 streams are async: create the client with "
                "openai.AsyncOpenAI(...) (same arguments) and pass a factory of "
                "client.chat.completions.create(..., stream=True)"
            )
        if self.warn_sdk_retries and not self._warned:
            self._check_sdk_retries(stream)
        return ChunkStream(stream, _SniffingReader(stream, self.require_finish_reason))

    def _check_sdk_retries(self, stream: Any) -> None:
        retries = getattr(getattr(stream, "_client", None), "max_retries", 0)
        if not isinstance(retries, int) or retries <= 0:
            return
        with self._lock:
            if self._warned:
                return
            self._warned = True
        log.warning(
            "l0: this OpenAI client has max_retries=%d, so the SDK retries failed requests "
            "inside every L0 attempt and retries multiply (up to %d requests per attempt). "
            "Create it with AsyncOpenAI(max_retries=0) and let l0.Retry decide, or use "
            "l0.wrap(client), which does this for you.",
            retries,
            retries + 1,
        )
