"""Turning a :class:`~l0.testing.faults.Fault` into bytes: SSE chunks, pauses and drops."""

from __future__ import annotations

import concurrent.futures
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse

from l0.testing.faults import (
    _SYSTEM_FINGERPRINT,
    _T,
    MALFORMED_EVENT,
    MALFORMED_JSON,
    Fault,
    RecordedRequest,
)


class _DropConnection(Exception):
    """Raised inside a response so uvicorn closes the transport mid-body."""


class _HideDrops(logging.Filter):
    """Keeps uvicorn from logging a deliberate drop as an application crash.

    Nor a client that hung up before its request body arrived (a cancelled or timed-out
    request): there is nothing to answer, and the server did nothing wrong.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, _DropConnection | ClientDisconnect)


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


def _stream_error_steps(fault: Fault, tokens: Sequence[str], chunks: _Chunks) -> list[_Step]:
    """``after`` content chunks, then the error event; the body ends without ``[DONE]``."""
    steps: list[_Step] = [chunks.choice({"role": "assistant", "content": ""})]
    steps += [chunks.choice({"content": token}) for token in tokens[: fault.after]]
    steps.append(_Send(b"data: " + fault.body.encode() + b"\n\n"))
    return steps


def _raw_sse_steps(fault: Fault) -> list[_Step]:
    steps: list[_Step] = []
    for position, piece in enumerate(fault.pieces):
        if position and fault.delay:
            steps.append(_Pause(fault.delay))
        steps.append(_Send(piece))
    return steps


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
    headers = [(b"content-type", b"text/event-stream; charset=utf-8"), *headers]
    if fault.kind == "stream_error":
        return _Plan(200, headers, _stream_error_steps(fault, tokens, chunks))
    if fault.kind == "raw_sse":
        return _Plan(200, headers, _raw_sse_steps(fault))
    if fault.kind == "tool_calls":
        steps, completion = _tool_call_stream(fault, chunks)
    else:
        steps, completion = _text_stream(fault, tokens, chunks)
    if _DROP not in steps:
        if usage_chunk:
            steps.append(chunks.usage(_usage(_count_prompt_tokens(record.messages), completion)))
        steps.append(_Send(b"data: [DONE]\n\n"))
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


PREFILL_REJECTION: Final = (
    "This model does not support assistant message prefill. The conversation must end with "
    "a user message (messages[-1].role must be 'user')."
)
"""The message of :meth:`Fault.rejects_prefill`'s 400."""


def _continued_part(answer: str, messages: Sequence[Any]) -> int:
    """Characters of ``answer`` that a continuation request already carries (0: none)."""
    if len(messages) < 2 or not isinstance(messages[-1], Mapping):
        return 0
    last = messages[-1]
    content = last.get("content")
    if not isinstance(content, str) or not content:
        return 0
    if last.get("role") == "assistant":
        return len(content) if answer.startswith(content) else 0
    if last.get("role") != "user":
        return 0
    # The longest beginning of the answer quoted in the message; "is quoted" only gets harder
    # as the beginning gets longer, so a binary search finds it.
    low, high = 0, len(answer)
    while low < high:
        middle = (low + high + 1) // 2
        if answer[:middle] in content:
            low = middle
        else:
            high = middle - 1
    return low


def _continuation_fault(fault: Fault, tokens: Sequence[str], record: RecordedRequest) -> Fault:
    """The plain fault a ``continues`` / ``rejects_prefill`` / ``starts_over`` request plays."""
    if fault.kind == "rejects_prefill":
        last = record.messages[-1] if record.messages else None
        if isinstance(last, Mapping) and last.get("role") == "assistant":
            error = {
                "message": PREFILL_REJECTION,
                "type": "invalid_request_error",
                "param": "messages",
                "code": None,
            }
            return Fault.status(400, {"error": error})
    rest = list(tokens)
    if fault.kind != "starts_over":
        skip = _continued_part("".join(tokens), record.messages)
        while rest and skip >= len(rest[0]):
            skip -= len(rest.pop(0))
        if rest and skip:
            rest[0] = rest[0][skip:]
    finish = "stop"
    if fault.max_tokens is not None and len(rest) > fault.max_tokens:
        rest, finish = rest[: fault.max_tokens], "length"
    if not rest:
        return Fault.zero_output()
    return Fault.ok(tokens=rest, delay=fault.delay, finish_reason=finish)


def _plan(fault: Fault, tokens: Sequence[str], record: RecordedRequest) -> _Plan:
    if fault.kind in ("continues", "rejects_prefill", "starts_over"):
        played = _continuation_fault(fault, tokens, record)
        return _plan(played, played.tokens or (), record)
    headers = [(b"x-request-id", f"req_l0chaos_{record.index}".encode())]
    if fault.kind in {"stream_error", "raw_sse"} and not record.stream:
        fault = Fault.status(500)
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
