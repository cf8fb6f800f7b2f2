"""Fault scripts for :class:`l0.testing.ChaosServer`: what the server answers, request by request.

:class:`Fault` values are plain data (no server needed to build one); :class:`RecordedRequest`
is what the server saw.
"""

from __future__ import annotations

import http
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

__all__ = [
    "DEFAULT_REFUSAL",
    "DEFAULT_TEXT",
    "Fault",
    "FaultKind",
    "RecordedRequest",
    "split_words",
]

DEFAULT_TEXT: Final = "Hello from the chaos server."
"""What every successful answer says when neither the server nor the fault sets a text."""

DEFAULT_REFUSAL: Final = "I'm sorry, but I can't help with that."
"""What :meth:`Fault.refusal` says unless given a text."""

FaultKind = Literal[
    "ok",
    "status",
    "drop_after",
    "stall_after",
    "slow_first_token",
    "slow_headers",
    "zero_output",
    "malformed_sse",
    "tool_calls",
    "refusal",
    "stream_error",
    "raw_sse",
    "continues",
    "rejects_prefill",
    "starts_over",
]
"""The behaviours a :class:`Fault` can script."""

MALFORMED_JSON: Final = b"{not json"
"""What :meth:`Fault.malformed_sse` sends where JSON belongs."""

MALFORMED_EVENT: Final = b"data: " + MALFORMED_JSON + b"\n\n"
"""The event :meth:`Fault.malformed_sse` streams: framed like SSE, but not JSON."""

_SYSTEM_FINGERPRINT: Final = "fp_l0chaos"
_STARTUP_TIMEOUT: Final = 30.0
# Backstop only: stop() interrupts every paused response, so connections close at once unless
# a client stopped reading and its socket buffer is full.
_GRACEFUL_SHUTDOWN: Final = 1
_WORD: Final = re.compile(r"\s*\S+|\s+")
_TEXTLESS_KINDS: Final = frozenset({"status", "zero_output", "tool_calls", "raw_sse"})

_T = TypeVar("_T")


def split_words(text: str) -> list[str]:
    """Split text into word tokens that keep their leading whitespace.

    ``"".join(split_words(text)) == text`` always holds; trailing whitespace becomes a token of
    its own.

    Args:
        text: The text to split.

    Returns:
        The tokens, e.g. ``["Hello", " world"]`` for ``"Hello world"``.
    """
    return _WORD.findall(text)


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}={value!r}: expected an int >= 0")
    if value < 0:
        raise ValueError(f"{name}={value!r}: expected an int >= 0")
    return value


def _check_seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name}={value!r}: expected a number of seconds >= 0")
    if math.isnan(value) or value < 0:
        raise ValueError(f"{name}={value!r}: expected a number of seconds >= 0")
    return float(value)


def _token_tuple(tokens: Sequence[str] | None) -> tuple[str, ...] | None:
    if tokens is None:
        return None
    # A str is a Sequence[str] too; splitting it into characters is never what was meant.
    if isinstance(tokens, str):
        raise TypeError("tokens must be a sequence of strings, not a string; use text=")
    result = tuple(tokens)
    for token in result:
        if not isinstance(token, str):
            raise TypeError(f"tokens must be strings, got {token!r}")
    return result


_ERROR_KINDS: Final[Mapping[int, tuple[str, str | None]]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", "permission_denied"),
    404: ("invalid_request_error", "model_not_found"),
    408: ("timeout_error", "request_timeout"),
    409: ("invalid_request_error", "conflict"),
    422: ("invalid_request_error", "unprocessable_entity"),
    429: ("requests", "rate_limit_exceeded"),
}


def _default_error(code: int) -> dict[str, Any]:
    kind, error_code = _ERROR_KINDS.get(
        code, ("server_error", None) if code >= 500 else ("invalid_request_error", None)
    )
    try:
        phrase = http.HTTPStatus(code).phrase
    except ValueError:
        phrase = "Error"
    return {
        "error": {
            "message": f"{phrase} (status {code} injected by l0.testing)",
            "type": kind,
            "param": None,
            "code": error_code,
        }
    }


@dataclass(frozen=True, slots=True)
class Fault:
    """What the server does with one request.

    Build faults with the static constructors (``Fault.ok()``, ``Fault.status(429)``, ...)
    rather than directly. Faults that stream text take ``text=`` or ``tokens=`` to override
    the server's answer for that one request.

    Attributes:
        kind: Which behaviour this is.
        text: Answer text for this request, split with :func:`split_words`; ``None`` keeps
            the server's answer.
        tokens: Exact token split of the answer; wins over ``text``.
        after: Content chunks sent before the fault strikes (``drop_after``, ``stall_after``,
            ``malformed_sse``).
        seconds: Length of the stall or slowdown.
        delay: Pause before each content chunk of an ``ok`` stream.
        finish_reason: ``finish_reason`` of the last choice chunk.
        status_code: HTTP status of a ``status`` fault.
        body: Body of a ``status`` fault, already serialized.
        content_type: Content type of that body.
        headers: Extra response headers of a ``status`` fault.
        calls: ``(name, arguments as JSON)`` of each scripted tool call.
        split: How many chunks carry each tool call's arguments.
        pieces: The body writes of a ``raw_sse`` fault, sent as given.
        max_tokens: Most content chunks a ``continues`` or ``rejects_prefill`` answer sends
            before it stops with ``finish_reason`` ``"length"``; ``None``: no limit.
    """

    kind: FaultKind
    text: str | None = None
    tokens: tuple[str, ...] | None = None
    after: int = 0
    seconds: float = 0.0
    delay: float = 0.0
    finish_reason: str = "stop"
    status_code: int = 200
    body: str = ""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    calls: tuple[tuple[str, str], ...] = ()
    split: int = 1
    pieces: tuple[bytes, ...] = ()
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        _check_count("after", self.after)
        _check_seconds("seconds", self.seconds)
        _check_seconds("delay", self.delay)
        if self.text is not None and self.tokens is not None:
            raise ValueError("give text or tokens, not both")
        if self.kind in _TEXTLESS_KINDS and (self.text, self.tokens) != (None, None):
            raise ValueError(f"a {self.kind} fault sends no text")
        if self.max_tokens is not None and _check_count("max_tokens", self.max_tokens) < 1:
            raise ValueError(f"max_tokens={self.max_tokens!r}: expected an int >= 1 or None")
        if self.kind == "tool_calls" and self.split < 1:
            raise ValueError(f"split={self.split!r}: expected an int >= 1")

    @staticmethod
    def ok(
        text: str | None = None,
        tokens: Sequence[str] | None = None,
        delay: float = 0.0,
        *,
        finish_reason: str = "stop",
    ) -> Fault:
        """A clean answer.

        Args:
            text: Answer text; defaults to the server's.
            tokens: Exact token split of the answer; give this or ``text``.
            delay: Seconds to wait before each content chunk (non-streaming: before the body,
                once per token).
            finish_reason: Reported reason, e.g. ``"length"`` for a truncated answer.

        Returns:
            The fault.
        """
        return Fault(
            "ok",
            text=text,
            tokens=_token_tuple(tokens),
            delay=delay,
            finish_reason=finish_reason,
        )

    @staticmethod
    def status(
        code: int,
        body: Mapping[str, Any] | str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        """An HTTP error response, for streaming and non-streaming requests alike.

        Args:
            code: HTTP status, 400 to 599.
            body: JSON body (a mapping), or a raw text body (a str, sent as ``text/plain``).
                Defaults to an OpenAI-style ``{"error": {"message", "type", "param",
                "code"}}`` derived from ``code``.
            headers: Extra response headers, e.g. ``{"Retry-After": "1"}``.

        Returns:
            The fault.
        """
        checked: object = code
        if isinstance(checked, bool) or not isinstance(checked, int) or not 400 <= code <= 599:
            raise ValueError(f"code={code!r}: expected an HTTP error status, 400 to 599")
        content_type = "application/json"
        if body is None:
            text = json.dumps(_default_error(code))
        elif isinstance(body, str):
            text, content_type = body, "text/plain; charset=utf-8"
        else:
            text = json.dumps(dict(body))
        return Fault(
            "status",
            status_code=code,
            body=text,
            content_type=content_type,
            headers=tuple((str(k), str(v)) for k, v in (headers or {}).items()),
        )

    @staticmethod
    def drop_after(
        k: int, *, text: str | None = None, tokens: Sequence[str] | None = None
    ) -> Fault:
        """Stream ``k`` content chunks, then close the connection mid-body.

        The client sees a protocol error (an incomplete chunked body), never a clean end.
        Non-streaming: half the JSON body is sent, then the connection closes.

        Args:
            k: Content chunks sent before the drop.
            text: Answer text for this request.
            tokens: Exact token split for this request.

        Returns:
            The fault.
        """
        return Fault("drop_after", text=text, tokens=_token_tuple(tokens), after=k)

    @staticmethod
    def stall_after(
        k: int,
        seconds: float = 30.0,
        *,
        text: str | None = None,
        tokens: Sequence[str] | None = None,
    ) -> Fault:
        """Stream ``k`` content chunks, send nothing for ``seconds``, then finish normally.

        The stall ends early when the client disconnects or the server stops (then the
        connection is dropped). Non-streaming: headers, a stall, then the body.

        Args:
            k: Content chunks sent before the stall.
            seconds: Length of the stall.
            text: Answer text for this request.
            tokens: Exact token split for this request.

        Returns:
            The fault.
        """
        return Fault(
            "stall_after", text=text, tokens=_token_tuple(tokens), after=k, seconds=seconds
        )

    @staticmethod
    def slow_first_token(
        seconds: float, *, text: str | None = None, tokens: Sequence[str] | None = None
    ) -> Fault:
        """Send the response headers at once, then wait ``seconds`` before the first chunk.

        Args:
            seconds: Wait between the headers and the first chunk (or the JSON body).
            text: Answer text for this request.
            tokens: Exact token split for this request.

        Returns:
            The fault.
        """
        return Fault("slow_first_token", text=text, tokens=_token_tuple(tokens), seconds=seconds)

    @staticmethod
    def slow_headers(
        seconds: float, *, text: str | None = None, tokens: Sequence[str] | None = None
    ) -> Fault:
        """Wait ``seconds`` before sending even the response headers.

        Args:
            seconds: Wait before the status line.
            text: Answer text for this request.
            tokens: Exact token split for this request.

        Returns:
            The fault.
        """
        return Fault("slow_headers", text=text, tokens=_token_tuple(tokens), seconds=seconds)

    @staticmethod
    def zero_output() -> Fault:
        """A well-formed answer with no content.

        Streaming: the role chunk, the ``finish_reason`` chunk, the usage chunk when asked for,
        and ``[DONE]``. Non-streaming: ``content`` is ``""``.

        Returns:
            The fault.
        """
        return Fault("zero_output")

    @staticmethod
    def malformed_sse(
        after: int = 0, *, text: str | None = None, tokens: Sequence[str] | None = None
    ) -> Fault:
        """After ``after`` content chunks, send ``data: {not json`` and then the rest.

        Non-streaming: a 200 ``application/json`` response whose body is ``{not json``.

        Args:
            after: Content chunks sent before the malformed event.
            text: Answer text for this request.
            tokens: Exact token split for this request.

        Returns:
            The fault.
        """
        return Fault("malformed_sse", text=text, tokens=_token_tuple(tokens), after=after)

    @staticmethod
    def tool_calls(calls: Sequence[tuple[str, Mapping[str, Any]]], split: int = 3) -> Fault:
        """Answer with tool calls instead of text, ``finish_reason`` ``"tool_calls"``.

        Streaming, per call: one delta with ``index``, ``id`` (``call_<index>``), ``type``
        ``"function"``, the name and ``""`` arguments, then the JSON arguments cut into exactly
        ``split`` fragments (some empty when the JSON is shorter than ``split``).

        Args:
            calls: ``(function name, arguments)`` of each call, in order.
            split: Argument fragments per call.

        Returns:
            The fault.
        """
        encoded = tuple((str(name), json.dumps(dict(arguments))) for name, arguments in calls)
        if not encoded:
            raise ValueError("tool_calls needs at least one call")
        return Fault("tool_calls", calls=encoded, split=_check_count("split", split))

    @staticmethod
    def refusal(text: str = DEFAULT_REFUSAL, *, tokens: Sequence[str] | None = None) -> Fault:
        """The model declines: ``refusal`` instead of ``content``, as OpenAI sends it.

        Streaming: a role delta with ``"content": null, "refusal": ""``, one ``{"refusal":
        token}`` delta per token, ``finish_reason`` ``"stop"``. Non-streaming: the message has
        ``content`` null and the whole ``refusal``.

        Args:
            text: The refusal, split with :func:`split_words`.
            tokens: Exact token split of the refusal; wins over ``text``.

        Returns:
            The fault.
        """
        given = _token_tuple(tokens)
        return Fault("refusal", text=None if given is not None else text, tokens=given)

    @staticmethod
    def stream_error(
        after: int = 0,
        *,
        code: str | None = "server_error",
        message: str = "The server had an error while processing your request.",
        text: str | None = None,
        tokens: Sequence[str] | None = None,
    ) -> Fault:
        """After ``after`` content chunks, send an ``{"error": {...}}`` event and end the body.

        This is how OpenAI reports a failure once a stream has started with status 200; the SDK
        raises ``openai.APIError`` with the error's ``message`` and ``code``. Non-streaming: a 500.

        Args:
            after: Content chunks sent before the error event.
            code: The error's ``code`` (``None`` sends ``null``).
            message: The error's ``message``.
            text: Answer text for this request.
            tokens: Exact token split for this request.

        Returns:
            The fault.
        """
        error = {"message": message, "type": "server_error", "param": None, "code": code}
        return Fault(
            "stream_error",
            text=text,
            tokens=_token_tuple(tokens),
            after=after,
            body=json.dumps({"error": error}, separators=(",", ":")),
        )

    @staticmethod
    def raw_sse(pieces: Sequence[bytes], *, gap: float = 0.0) -> Fault:
        """Answer a streaming request with exactly these body bytes, one write per piece.

        For testing stream parsers: pieces may cut events, lines or UTF-8 characters anywhere.

        Args:
            pieces: The body, as the writes to make (each non-empty ``bytes``).
            gap: Seconds to wait between writes, so they reach the client as separate reads.

        Returns:
            The fault.
        """
        checked = tuple(pieces)
        for piece in checked:
            value: object = piece  # callers may pass anything; say what was wrong
            if not isinstance(value, bytes) or not value:
                raise TypeError(f"pieces: {piece!r}: expected non-empty bytes")
        return Fault("raw_sse", pieces=checked, delay=gap)

    @staticmethod
    def continues(
        max_tokens: int | None = None,
        *,
        text: str | None = None,
        tokens: Sequence[str] | None = None,
        delay: float = 0.0,
    ) -> Fault:
        """A model that honours a continuation: it answers with the rest of the text.

        When the request ends with an assistant message (a prefill) that the answer starts
        with, or its last user message (after the first) quotes the beginning of the answer,
        only the text after that part is streamed; otherwise the whole answer. With
        ``max_tokens`` the answer stops after that many chunks with ``finish_reason``
        ``"length"``, as a model cut by its token limit does.

        Args:
            max_tokens: Most content chunks to send, or ``None``.
            text: Answer text for this request.
            tokens: Exact token split for this request.
            delay: Seconds to wait before each content chunk.

        Returns:
            The fault.
        """
        return Fault(
            "continues", text=text, tokens=_token_tuple(tokens), delay=delay, max_tokens=max_tokens
        )

    @staticmethod
    def rejects_prefill(
        max_tokens: int | None = None,
        *,
        text: str | None = None,
        tokens: Sequence[str] | None = None,
    ) -> Fault:
        """A model that rejects an assistant prefill with HTTP 400, and otherwise continues.

        A request whose last message has role ``assistant`` gets a 400
        ``invalid_request_error`` saying the final message must be a user message (as many
        providers answer); any other request is answered like :meth:`continues`.

        Args:
            max_tokens: As for :meth:`continues`.
            text: Answer text for this request.
            tokens: Exact token split for this request.

        Returns:
            The fault.
        """
        return Fault(
            "rejects_prefill", text=text, tokens=_token_tuple(tokens), max_tokens=max_tokens
        )

    @staticmethod
    def starts_over(
        *, text: str | None = None, tokens: Sequence[str] | None = None, delay: float = 0.0
    ) -> Fault:
        """A model that ignores a continuation (prefill or user turn) and answers from the start.

        Args:
            text: Answer text for this request.
            tokens: Exact token split for this request.
            delay: Seconds to wait before each content chunk.

        Returns:
            The fault.
        """
        return Fault("starts_over", text=text, tokens=_token_tuple(tokens), delay=delay)


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """A request as the server received it, before any fault applied.

    Attributes:
        index: Position in :attr:`ChaosServer.requests` (0-based, reset by ``reset()``).
        model: The request's ``model`` (``""`` when missing).
        messages: The request's ``messages``.
        stream: Whether ``stream`` was ``true``.
        body: The whole JSON body.
        headers: Request headers, names lower-cased.
        time: ``time.monotonic()`` when the request was recorded.
        fault: The fault the server answered with.
        ended: ``time.monotonic()`` when the server stopped answering it (the response was
            sent whole, dropped, or the client closed the connection); ``None`` while the
            response is still being written.
        disconnected: Whether the client closed the connection before the response ended.
        path: The endpoint: ``/v1/chat/completions``, ``/v1/responses`` or ``/v1/embeddings``.
    """

    index: int
    model: str
    messages: list[Any]
    stream: bool
    body: dict[str, Any]
    headers: dict[str, str]
    time: float
    fault: Fault
    ended: float | None = None
    disconnected: bool = False
    path: str = "/v1/chat/completions"
