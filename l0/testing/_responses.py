"""Plans for ``POST /v1/responses`` (OpenAI Responses API) and ``POST /v1/embeddings``.

The same :class:`~l0.testing.faults.Fault` script drives these endpoints as chat completions:
``ok`` streams ``response.output_text.delta`` events and ends with ``response.completed`` (or
``response.incomplete`` for ``finish_reason="length"``); ``refusal`` streams
``response.refusal.delta``; ``tool_calls`` streams ``function_call`` items and their argument
deltas; ``drop_after``, ``stall_after``, ``malformed_sse``, ``slow_first_token`` and
``slow_headers`` strike as they do for chat completions; ``status`` answers with the error.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from l0.testing._plans import _DROP, _fragments, _Pause, _Plan, _Send, _Step
from l0.testing.faults import MALFORMED_EVENT, Fault, RecordedRequest

EMBEDDING_SIZE: Final = 8
"""Length of the vectors ``/v1/embeddings`` returns (deterministic, from the input text)."""


def input_messages(body: Mapping[str, Any]) -> list[Any]:
    """A Responses request's ``input`` as a list of messages (a bare string is one user turn)."""
    given = body.get("input")
    if isinstance(given, str):
        return [{"role": "user", "content": given}]
    return list(given) if isinstance(given, list) else []


def _words(messages: Sequence[Any]) -> int:
    total = 0
    for message in messages:
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, str):
            total += len(content.split())
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                    total += len(part["text"].split())
    return total


class _Events:
    """Builds Responses stream events, numbered, in OpenAI's ``event:`` + ``data:`` framing."""

    def __init__(self, record: RecordedRequest) -> None:
        self.record = record
        self.sequence = 0
        self.response_id = f"resp_l0chaos{record.index}"
        self.created = int(datetime.now(UTC).timestamp())

    def send(self, kind: str, **fields: Any) -> _Send:
        payload = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        data = json.dumps(payload, separators=(",", ":"))
        return _Send(f"event: {kind}\ndata: {data}\n\n".encode())

    def response(
        self, status: str, output: list[dict[str, Any]] | None = None, **fields: Any
    ) -> dict[str, Any]:
        return {
            "id": self.response_id,
            "object": "response",
            "created_at": self.created,
            "model": self.record.model,
            "output": output or [],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "status": status,
            **fields,
        }

    def usage(self, completion: int) -> dict[str, Any]:
        prompt = _words(self.record.messages)
        return {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + completion,
        }


def _message(item_id: str, kind: str, text: str, status: str) -> dict[str, Any]:
    part: dict[str, Any] = (
        {"type": "refusal", "refusal": text}
        if kind == "refusal"
        else {"type": "output_text", "text": text, "annotations": []}
    )
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [part] if status == "completed" else [],
    }


def _text_steps(fault: Fault, tokens: Sequence[str], events: _Events) -> tuple[list[_Step], Any]:
    kind = fault.kind
    strike = fault.after if kind in {"drop_after", "stall_after", "malformed_sse"} else None
    strikes: dict[str, list[_Step]] = {
        "drop_after": [_DROP],
        "stall_after": [_Pause(fault.seconds)],
        "malformed_sse": [_Send(MALFORMED_EVENT)],
    }
    strike_steps = strikes.get(kind, [])
    item_id = f"msg_l0chaos{events.record.index}"
    part_kind = "refusal" if kind == "refusal" else "output_text"
    content = () if kind == "zero_output" else tuple(tokens)
    steps: list[_Step] = []
    if kind == "slow_first_token":
        steps.append(_Pause(fault.seconds))
    steps.append(
        events.send(
            "response.output_item.added",
            output_index=0,
            item=_message(item_id, part_kind, "", "in_progress"),
        )
    )
    empty_part: dict[str, Any] = (
        {"type": "refusal", "refusal": ""}
        if kind == "refusal"
        else {"type": "output_text", "text": "", "annotations": []}
    )
    where = {"item_id": item_id, "output_index": 0, "content_index": 0}
    steps.append(events.send("response.content_part.added", **where, part=empty_part))
    delta_kind = "response.refusal.delta" if kind == "refusal" else "response.output_text.delta"
    for position, token in enumerate(content):
        if position == strike:
            steps.extend(strike_steps)
        if fault.delay:
            steps.append(_Pause(fault.delay))
        extra: dict[str, Any] = {} if kind == "refusal" else {"logprobs": []}
        steps.append(events.send(delta_kind, **where, delta=token, **extra))
    if strike is not None and strike >= len(content):
        steps.extend(strike_steps)
    text = "".join(content)
    if kind == "refusal":
        steps.append(events.send("response.refusal.done", **where, refusal=text))
    else:
        steps.append(events.send("response.output_text.done", **where, text=text, logprobs=[]))
    done = _message(item_id, part_kind, text, "completed")
    steps.append(events.send("response.content_part.done", **where, part=done["content"][0]))
    steps.append(events.send("response.output_item.done", output_index=0, item=done))
    return steps, ([done], len(content))


def _tool_steps(fault: Fault, events: _Events) -> tuple[list[_Step], Any]:
    steps: list[_Step] = []
    output = []
    sent = 0
    for index, (name, arguments) in enumerate(fault.calls):
        item = {
            "id": f"fc_l0chaos{events.record.index}_{index}",
            "type": "function_call",
            "call_id": f"call_{index}",
            "name": name,
            "arguments": "",
            "status": "in_progress",
        }
        steps.append(events.send("response.output_item.added", output_index=index, item=item))
        where = {"item_id": item["id"], "output_index": index}
        for fragment in _fragments(arguments, fault.split):
            steps.append(
                events.send("response.function_call_arguments.delta", **where, delta=fragment)
            )
            sent += 1
        steps.append(
            events.send("response.function_call_arguments.done", **where, arguments=arguments)
        )
        done = {**item, "arguments": arguments, "status": "completed"}
        steps.append(events.send("response.output_item.done", output_index=index, item=done))
        output.append(done)
    return steps, (output, sent)


def responses_plan(
    fault: Fault, tokens: Sequence[str], record: RecordedRequest, headers: list[tuple[bytes, bytes]]
) -> _Plan:
    """The reply to a ``/v1/responses`` request (``status`` faults are handled by the caller)."""
    events = _Events(record)
    opening = [
        events.send("response.created", response=events.response("in_progress")),
        events.send("response.in_progress", response=events.response("in_progress")),
    ]
    if fault.kind == "tool_calls":
        steps, (output, completion) = _tool_steps(fault, events)
    else:
        steps, (output, completion) = _text_steps(fault, tokens, events)
    if fault.finish_reason == "length":
        final = events.response(
            "incomplete",
            output,
            usage=events.usage(completion),
            incomplete_details={"reason": "max_output_tokens"},
        )
        closing = events.send("response.incomplete", response=final)
    else:
        final = events.response("completed", output, usage=events.usage(completion))
        closing = events.send("response.completed", response=final)
    if not record.stream:
        body = json.dumps(final).encode()
        head = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        return _Plan(200, [*head, *headers], [_Send(body)])
    if _DROP not in steps:
        steps.append(closing)
    headers = [(b"content-type", b"text/event-stream; charset=utf-8"), *headers]
    delay = fault.seconds if fault.kind == "slow_headers" else 0.0
    return _Plan(200, headers, [*opening, *steps], header_delay=delay)


def _vector(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round((byte - 128) / 128, 6) for byte in digest[:EMBEDDING_SIZE]]


def embeddings_body(body: Mapping[str, Any], model: str) -> dict[str, Any]:
    """The reply to ``/v1/embeddings``: one deterministic vector per input string."""
    given = body.get("input")
    texts = [given] if isinstance(given, str) else list(given) if isinstance(given, list) else []
    data = [
        {"object": "embedding", "index": index, "embedding": _vector(str(text))}
        for index, text in enumerate(texts)
    ]
    words = sum(len(str(text).split()) for text in texts)
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": words, "total_tokens": words},
    }
