"""Fault-injecting, OpenAI-compatible chat completions server for tests.

:class:`ChaosServer` serves ``POST /v1/chat/completions`` and ``GET /v1/models`` on
``127.0.0.1`` and answers each request with the next :class:`Fault` of a script: a clean
stream, an HTTP error, a dropped connection, a stall, a malformed event and so on. Responses
are byte-for-byte shaped like OpenAI's, so the real ``openai`` SDK (or plain ``httpx``) can be
pointed at :attr:`ChaosServer.base_url`.

uvicorn runs on a thread of its own with its own event loop. The caller's event loop therefore
never sees the server's tasks, a blocked caller cannot stall the server, and the server works
the same under any async framework or none.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import http
import json
import logging
import math
import re
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, Literal, Self, TypeVar

try:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route
    from starlette.types import Receive, Scope, Send
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("l0.testing needs starlette and uvicorn: pip install 'l0[testing]'") from exc

__all__ = [
    "DEFAULT_REFUSAL",
    "DEFAULT_TEXT",
    "ChaosServer",
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
_TEXTLESS_KINDS: Final = frozenset({"status", "zero_output", "tool_calls"})

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

    def __post_init__(self) -> None:
        _check_count("after", self.after)
        _check_seconds("seconds", self.seconds)
        _check_seconds("delay", self.delay)
        if self.text is not None and self.tokens is not None:
            raise ValueError("give text or tokens, not both")
        if self.kind in _TEXTLESS_KINDS and (self.text, self.tokens) != (None, None):
            raise ValueError(f"a {self.kind} fault sends no text")
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


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """A chat completions request as the server received it, before any fault applied.

    Attributes:
        index: Position in :attr:`ChaosServer.requests` (0-based, reset by ``reset()``).
        model: The request's ``model`` (``""`` when missing).
        messages: The request's ``messages``.
        stream: Whether ``stream`` was ``true``.
        body: The whole JSON body.
        headers: Request headers, names lower-cased.
        time: ``time.monotonic()`` when the request was recorded.
        fault: The fault the server answered with.
    """

    index: int
    model: str
    messages: list[Any]
    stream: bool
    body: dict[str, Any]
    headers: dict[str, str]
    time: float
    fault: Fault


class _DropConnection(Exception):
    """Raised inside a response so uvicorn closes the transport mid-body."""


class _HideDrops(logging.Filter):
    """Keeps uvicorn from logging a deliberate drop as an application crash."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], _DropConnection))


def _install_drop_filter() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _HideDrops) for f in logger.filters):
        logger.addFilter(_HideDrops())


def _settle(
    future: concurrent.futures.Future[_T],
    *,
    result: _T | None = None,
    error: BaseException | None = None,
) -> bool:
    """Resolve a cross-thread future unless its waiter already gave up on it."""
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]
    except concurrent.futures.InvalidStateError:
        return False
    return True


def _sse(payload: Mapping[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def _count_prompt_tokens(messages: Sequence[Any]) -> int:
    words = 0
    for message in messages:
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, str):
            words += len(content.split())
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                    words += len(part["text"].split())
    return words


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _fragments(arguments: str, split: int) -> list[str]:
    size = len(arguments)
    cuts = [size * i // split for i in range(split + 1)]
    return [arguments[cuts[i] : cuts[i + 1]] for i in range(split)]


@dataclass(frozen=True, slots=True)
class _Send:
    data: bytes


@dataclass(frozen=True, slots=True)
class _Pause:
    seconds: float


class _Drop:
    pass


_DROP: Final = _Drop()
_Step = _Send | _Pause | _Drop


@dataclass(frozen=True, slots=True)
class _Plan:
    status: int
    headers: list[tuple[bytes, bytes]]
    steps: list[_Step]
    header_delay: float = 0.0


class _Chunks:
    """Builds ``chat.completion.chunk`` events the way OpenAI serializes them."""

    def __init__(self, completion_id: str, created: int, model: str, usage_chunk: bool) -> None:
        self._base = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": _SYSTEM_FINGERPRINT,
        }
        self._usage_chunk = usage_chunk

    def choice(self, delta: Mapping[str, Any], finish_reason: str | None = None) -> _Send:
        payload: dict[str, Any] = {
            **self._base,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        # With include_usage OpenAI puts "usage": null on every chunk but the last.
        if self._usage_chunk:
            payload["usage"] = None
        return _Send(_sse(payload))

    def usage(self, usage: Mapping[str, Any]) -> _Send:
        return _Send(_sse({**self._base, "choices": [], "usage": usage}))


def _tool_call_stream(fault: Fault, chunks: _Chunks) -> tuple[list[_Step], int]:
    steps: list[_Step] = []
    sent = 0
    for index, (name, arguments) in enumerate(fault.calls):
        header: dict[str, Any] = {
            "index": index,
            "id": f"call_{index}",
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        # OpenAI folds the role into the first tool call delta instead of a chunk of its own.
        delta: dict[str, Any] = {"tool_calls": [header]}
        if index == 0:
            delta = {"role": "assistant", "content": None, "tool_calls": [header], "refusal": None}
        steps.append(chunks.choice(delta))
        for fragment in _fragments(arguments, fault.split):
            steps.append(
                chunks.choice(
                    {"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}
                )
            )
            sent += 1
    steps.append(chunks.choice({}, "tool_calls"))
    return steps, sent


def _text_stream(fault: Fault, tokens: Sequence[str], chunks: _Chunks) -> tuple[list[_Step], int]:
    kind = fault.kind
    strike = fault.after if kind in {"drop_after", "stall_after", "malformed_sse"} else None
    strike_steps: list[_Step] = []
    if kind == "drop_after":
        strike_steps = [_DROP]
    elif kind == "stall_after":
        strike_steps = [_Pause(fault.seconds)]
    elif kind == "malformed_sse":
        strike_steps = [_Send(MALFORMED_EVENT)]

    steps: list[_Step] = []
    if kind == "slow_first_token":
        steps.append(_Pause(fault.seconds))
    # A refusal streams in ``refusal`` deltas; ``content`` stays null throughout.
    field = "refusal" if kind == "refusal" else "content"
    if kind == "refusal":
        steps.append(chunks.choice({"role": "assistant", "content": None, "refusal": ""}))
    else:
        steps.append(chunks.choice({"role": "assistant", "content": ""}))
    content = () if kind == "zero_output" else tokens
    for position, token in enumerate(content):
        if position == strike:
            steps.extend(strike_steps)
        if fault.delay:
            steps.append(_Pause(fault.delay))
        steps.append(chunks.choice({field: token}))
    if strike is not None and strike >= len(content):
        steps.extend(strike_steps)
    steps.append(chunks.choice({}, fault.finish_reason))
    return steps, len(content)


def _stream_plan(
    fault: Fault, tokens: Sequence[str], record: RecordedRequest, headers: list[tuple[bytes, bytes]]
) -> _Plan:
    options = record.body.get("stream_options")
    usage_chunk = isinstance(options, Mapping) and options.get("include_usage") is True
    chunks = _Chunks(
        f"chatcmpl-l0chaos{record.index}",
        int(datetime.now(UTC).timestamp()),
        record.model,
        usage_chunk,
    )
    if fault.kind == "tool_calls":
        steps, completion = _tool_call_stream(fault, chunks)
    else:
        steps, completion = _text_stream(fault, tokens, chunks)
    if _DROP not in steps:
        if usage_chunk:
            steps.append(chunks.usage(_usage(_count_prompt_tokens(record.messages), completion)))
        steps.append(_Send(b"data: [DONE]\n\n"))
    headers = [(b"content-type", b"text/event-stream; charset=utf-8"), *headers]
    delay = fault.seconds if fault.kind == "slow_headers" else 0.0
    return _Plan(200, headers, steps, header_delay=delay)


def _completion_body(fault: Fault, tokens: Sequence[str], record: RecordedRequest) -> bytes:
    message: dict[str, Any]
    if fault.kind == "tool_calls":
        calls = [
            {
                "id": f"call_{index}",
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }
            for index, (name, arguments) in enumerate(fault.calls)
        ]
        message = {"role": "assistant", "content": None, "tool_calls": calls, "refusal": None}
        finish_reason, completion = "tool_calls", sum(fault.split for _ in calls)
    elif fault.kind == "refusal":
        message = {"role": "assistant", "content": None, "refusal": "".join(tokens)}
        message["annotations"] = []
        finish_reason, completion = fault.finish_reason, len(tokens)
    else:
        content = () if fault.kind == "zero_output" else tokens
        message = {"role": "assistant", "content": "".join(content), "refusal": None}
        message["annotations"] = []
        finish_reason, completion = fault.finish_reason, len(content)
    payload = {
        "id": f"chatcmpl-l0chaos{record.index}",
        "object": "chat.completion",
        "created": int(datetime.now(UTC).timestamp()),
        "model": record.model,
        "system_fingerprint": _SYSTEM_FINGERPRINT,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
        ],
        "usage": _usage(_count_prompt_tokens(record.messages), completion),
    }
    return json.dumps(payload).encode()


def _completion_plan(
    fault: Fault, tokens: Sequence[str], record: RecordedRequest, headers: list[tuple[bytes, bytes]]
) -> _Plan:
    if fault.kind == "malformed_sse":
        body = MALFORMED_JSON
    else:
        body = _completion_body(fault, tokens, record)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *headers,
    ]
    steps: list[_Step] = []
    if fault.kind == "ok" and fault.delay:
        steps.append(_Pause(fault.delay * len(tokens)))
    elif fault.kind in {"slow_first_token", "stall_after"}:
        steps.append(_Pause(fault.seconds))
    if fault.kind == "drop_after":
        steps += [_Send(body[: len(body) // 2]), _DROP]
    else:
        steps.append(_Send(body))
    delay = fault.seconds if fault.kind == "slow_headers" else 0.0
    return _Plan(200, headers, steps, header_delay=delay)


def _plan(fault: Fault, tokens: Sequence[str], record: RecordedRequest) -> _Plan:
    headers = [(b"x-request-id", f"req_l0chaos_{record.index}".encode())]
    if fault.kind == "status":
        body = fault.body.encode()
        extra = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in fault.headers]
        if all(name != b"content-type" for name, _ in extra):
            headers.append((b"content-type", fault.content_type.encode("latin-1")))
        headers += [(b"content-length", str(len(body)).encode()), *extra]
        return _Plan(fault.status_code, headers, [_Send(body)])
    if record.stream:
        return _stream_plan(fault, tokens, record, headers)
    return _completion_plan(fault, tokens, record, headers)


def _error_response(status: int, message: str) -> JSONResponse:
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": None}
    return JSONResponse({"error": error}, status_code=status)


class _Exchange(Response):
    """Plays one planned response over raw ASGI messages.

    The body is written message by message so a fault can pause between chunks, and a drop is
    an exception after the headers went out, which makes uvicorn close the transport.
    """

    def __init__(self, owner: ChaosServer, plan: _Plan) -> None:
        # Response.__init__ is skipped on purpose: it would serialize a body this class never
        # has; __call__ below writes every ASGI message itself.
        self.status_code = plan.status
        self.background = None
        self.raw_headers = plan.headers
        self._owner = owner
        self._plan = plan
        self._wake = asyncio.Event()
        # Whether the client went away; an interrupt without it means the server is stopping.
        self._gone = False

    def interrupt(self, *, stopping: bool) -> None:
        """End any pause now; ``stopping`` tells a server stop from a client disconnect."""
        if not stopping:
            self._gone = True
        self._wake.set()

    async def _pause(self, seconds: float) -> bool:
        """Sleep; False when interrupted, so the caller must give up the response."""
        if not self._wake.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self._wake.wait()
        return not self._wake.is_set()

    async def _listen(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.interrupt(stopping=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        owner = self._owner
        owner._live.add(self)
        if owner._stopping:
            self.interrupt(stopping=True)
        listener = asyncio.get_running_loop().create_task(self._listen(receive))
        try:
            await self._play(send)
        finally:
            listener.cancel()
            owner._live.discard(self)

    async def _play(self, send: Send) -> None:
        plan = self._plan
        if plan.header_delay and not await self._pause(plan.header_delay):
            if not self._gone:
                await _send_whole(send, 503, "The chaos server is shutting down.")
            return
        await send({"type": "http.response.start", "status": plan.status, "headers": plan.headers})
        for step in plan.steps:
            if isinstance(step, _Pause):
                await self._pause(step.seconds)
            if self._wake.is_set():
                if self._gone:
                    return
                raise _DropConnection
            if isinstance(step, _Send):
                await send({"type": "http.response.body", "body": step.data, "more_body": True})
            elif isinstance(step, _Drop):
                raise _DropConnection
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _send_whole(send: Send, status: int, message: str) -> None:
    error = {"message": message, "type": "server_error", "param": None, "code": None}
    body = json.dumps({"error": error}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class _Uvicorn(uvicorn.Server):
    """uvicorn server that reports its bound port once listening."""

    def __init__(
        self, config: uvicorn.Config, owner: ChaosServer, started: concurrent.futures.Future[int]
    ) -> None:
        super().__init__(config)
        self._owner = owner
        self._started = started
        self._exit: asyncio.Event | None = None

    async def main_loop(self) -> None:
        # uvicorn polls should_exit every 0.1 s; waking on an event instead takes that
        # latency off every stop(), which a test suite pays once per test.
        self._exit = asyncio.Event()
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864_000
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.1):
                    await self._exit.wait()

    def request_exit(self) -> None:
        """Ask the server to shut down; call on the server's loop."""
        self.should_exit = True
        if self._exit is not None:
            self._exit.set()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        port: int = self.servers[0].sockets[0].getsockname()[1]
        # The caller may have stopped or given up on start() while the socket was bound.
        if not _settle(self._started, result=port) or self._owner._stop_requested:
            self.should_exit = True


class ChaosServer:
    """An OpenAI-compatible chat completions server that misbehaves on cue.

    Request *i* (0-based) gets ``script[i]``; once the script is used up every request gets
    ``default``. Requests for a model listed in ``model_scripts`` follow that model's script
    and position instead, and do not advance the shared one.

    Use it as ``async with ChaosServer(...) as server:`` (or ``with`` from sync code), or call
    :meth:`start` and :meth:`stop`. It binds ``127.0.0.1`` on a free port and never touches
    the network beyond that.

    Args:
        script: Faults for the first requests, in order.
        text: Answer text, split with :func:`split_words`.
        tokens: Exact token split of the answer; wins over ``text``.
        default: Fault once the script is used up; ``Fault.ok()`` if not given.
        model_scripts: Scripts of their own for some model names.
    """

    def __init__(
        self,
        script: Sequence[Fault] = (),
        *,
        text: str = DEFAULT_TEXT,
        tokens: Sequence[str] | None = None,
        default: Fault | None = None,
        model_scripts: Mapping[str, Sequence[Fault]] | None = None,
    ) -> None:
        given = _token_tuple(tokens)
        self._tokens = given if given is not None else tuple(split_words(text))
        self._default = default if default is not None else Fault.ok()
        self._check_faults([self._default])
        self._lock = threading.Lock()
        self._script = self._check_faults(script)
        self._position = 0
        self._model_scripts = {
            model: self._check_faults(faults) for model, faults in (model_scripts or {}).items()
        }
        self._model_positions: dict[str, int] = {}
        self._requests: list[RecordedRequest] = []
        self._models_seen: dict[str, None] = {}
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._done: concurrent.futures.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._uvicorn: _Uvicorn | None = None
        self._crash: BaseException | None = None
        self._stop_requested = False
        # Touched only on the server's own loop.
        self._live: set[_Exchange] = set()
        self._stopping = False

    @staticmethod
    def _check_faults(faults: Sequence[Fault]) -> tuple[Fault, ...]:
        result = tuple(faults)
        for fault in result:
            if not isinstance(fault, Fault):
                raise TypeError(f"expected a Fault, got {fault!r}")
        return result

    def __repr__(self) -> str:
        where = self.base_url if self._port is not None else "not running"
        return f"<ChaosServer {where} requests={len(self._requests)}>"

    @property
    def port(self) -> int:
        """The bound TCP port; raises ``RuntimeError`` when the server is not running."""
        if self._port is None:
            raise RuntimeError("the chaos server is not running; use `async with` or start()")
        return self._port

    @property
    def url(self) -> str:
        """Root URL, ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: the ``base_url`` an OpenAI client takes."""
        return f"{self.url}/v1"

    @property
    def requests(self) -> list[RecordedRequest]:
        """Chat completions requests received so far, oldest first (a snapshot copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def in_flight(self) -> int:
        """Responses still being written, including stalled ones."""
        return len(self._live)

    def set_script(self, script: Sequence[Fault], *, model: str | None = None) -> None:
        """Replace a script and restart it from its first fault.

        Recorded requests are kept; use :meth:`reset` to clear them.

        Args:
            script: The new faults.
            model: Replace that model's script (adding one if needed) instead of the shared.
        """
        faults = self._check_faults(script)
        with self._lock:
            if model is None:
                self._script, self._position = faults, 0
            else:
                self._model_scripts[model] = faults
                self._model_positions[model] = 0

    def reset(self) -> None:
        """Forget recorded requests and seen models, and rewind every script."""
        with self._lock:
            self._requests.clear()
            self._models_seen.clear()
            self._position = 0
            self._model_positions.clear()

    def _next_fault(self, model: str) -> Fault:
        if model in self._model_scripts:
            script = self._model_scripts[model]
            position = self._model_positions.get(model, 0)
            self._model_positions[model] = position + 1
        else:
            script, position = self._script, self._position
            self._position += 1
        return script[position] if position < len(script) else self._default

    def _tokens_for(self, fault: Fault) -> tuple[str, ...]:
        if fault.tokens is not None:
            return fault.tokens
        if fault.text is not None:
            return tuple(split_words(fault.text))
        return self._tokens

    # Request handlers; these run on the server thread.

    async def _chat(self, request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return _error_response(400, "The request body is not valid JSON.")
        if not isinstance(body, dict):
            return _error_response(400, "The request body must be a JSON object.")
        model = body.get("model")
        model = model if isinstance(model, str) else ""
        messages = body.get("messages")
        with self._lock:
            fault = self._next_fault(model)
            record = RecordedRequest(
                index=len(self._requests),
                model=model,
                messages=list(messages) if isinstance(messages, list) else [],
                stream=body.get("stream") is True,
                body=body,
                headers=dict(request.headers),
                time=time.monotonic(),
                fault=fault,
            )
            self._requests.append(record)
            if model:
                self._models_seen[model] = None
        return _Exchange(self, _plan(fault, self._tokens_for(fault), record))

    async def _models(self, request: Request) -> Response:
        with self._lock:
            names = dict.fromkeys([*self._model_scripts, *self._models_seen])
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "l0-testing"}
            for name in names
        ]
        return JSONResponse({"object": "list", "data": data})

    def _app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )

    # Lifecycle.

    def _launch(self) -> concurrent.futures.Future[int]:
        if self._thread is not None:
            raise RuntimeError("the chaos server is already running")
        started: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._done = concurrent.futures.Future()
        self._stop_requested = False
        self._stopping = False
        self._crash = None
        self._thread = threading.Thread(
            target=self._thread_main,
            args=(started, self._done),
            name="l0-chaos-server",
            daemon=True,
        )
        self._thread.start()
        return started

    def _thread_main(
        self, started: concurrent.futures.Future[int], done: concurrent.futures.Future[None]
    ) -> None:
        try:
            asyncio.run(self._serve(started))
        # uvicorn reports a failed bind with sys.exit(), hence BaseException.
        except BaseException as exc:
            if not _settle(started, error=RuntimeError(f"chaos server failed to start: {exc!r}")):
                self._crash = exc
        finally:
            _settle(started, error=RuntimeError("chaos server exited before it started"))
            self._loop = None
            _settle(done, result=None)

    async def _serve(self, started: concurrent.futures.Future[int]) -> None:
        self._loop = asyncio.get_running_loop()
        _install_drop_filter()
        config = uvicorn.Config(
            self._app(),
            host="127.0.0.1",
            port=0,
            interface="asgi3",
            http="h11",
            ws="none",
            lifespan="off",
            # None keeps uvicorn from reconfiguring the test process's logging.
            log_config=None,
            timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN,
        )
        self._uvicorn = _Uvicorn(config, self, started)
        try:
            await self._uvicorn.serve()
        finally:
            self._uvicorn = None

    def _begin_shutdown(self) -> None:
        # Runs on the server loop: wake every paused response so none holds shutdown up.
        self._stopping = True
        for exchange in list(self._live):
            exchange.interrupt(stopping=True)
        if self._uvicorn is not None:
            self._uvicorn.request_exit()

    def _request_stop(self) -> concurrent.futures.Future[None] | None:
        if self._thread is None:
            return None
        self._stop_requested = True
        loop = self._loop
        if loop is not None:
            # A closed loop means the thread is already on its way out.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._begin_shutdown)
        return self._done

    def _finish_stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=_STARTUP_TIMEOUT)
        self._port = None
        crash, self._crash = self._crash, None
        if crash is not None:
            raise RuntimeError(f"the chaos server crashed: {crash!r}") from crash

    async def start(self) -> None:
        """Start serving; returns once the port is bound.

        Raises:
            RuntimeError: The server is already running or could not start.
        """
        started = self._launch()
        try:
            self._port = await asyncio.wrap_future(started)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop serving, dropping streams still in flight; a no-op when not running.

        Stalled and slow responses are cut at once, so this returns within a few tenths of a
        second.
        """
        done = self._request_stop()
        if done is None:
            return
        await asyncio.wrap_future(done)
        self._finish_stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def __enter__(self) -> Self:
        started = self._launch()
        try:
            self._port = started.result(timeout=_STARTUP_TIMEOUT)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        done = self._request_stop()
        if done is not None:
            done.result(timeout=_STARTUP_TIMEOUT)
            self._finish_stop()
