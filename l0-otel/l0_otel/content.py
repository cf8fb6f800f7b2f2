"""Text for spans: error type names, JSON values, and GenAI message shapes (opt-in content).

Messages follow the GenAI semantic conventions 1.37.0 (``gen_ai.input.messages`` /
``gen_ai.output.messages``): ``{"role", "parts": [{"type": "text", "content": ...}]}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["error_type_of", "input_messages", "output_messages", "text_of"]


def error_type_of(text: Any) -> str:
    """The class name in an exception's ``repr``: ``"RateLimitError('…')"`` → ``RateLimitError``."""
    name = str(text).split("(", 1)[0].strip()
    return name.rsplit(".", 1)[-1][:64] or "Exception"


def text_of(value: Any) -> str:
    """``value`` as text: strings as they are, anything else as JSON (or its repr)."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=repr)
    except (TypeError, ValueError):
        return repr(value)


def input_messages(messages: Any) -> list[dict[str, Any]]:
    """Request messages in the GenAI conventions' shape: ``{"role", "parts": [...]}``.

    Chat messages (``{"role", "content"}``, content a string or a list of parts) are converted;
    a plain prompt string becomes one user message.
    """
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    out: list[dict[str, Any]] = []
    for message in messages if isinstance(messages, list | tuple) else ():
        if not isinstance(message, Mapping):
            continue
        content = message.get("content")
        parts: list[dict[str, Any]] = []
        if isinstance(content, str):
            parts.append({"type": "text", "content": content})
        elif isinstance(content, list):
            for part in content:
                kind = str(part.get("type")) if isinstance(part, Mapping) else "unknown"
                if kind == "text" and isinstance(part, Mapping):
                    parts.append({"type": "text", "content": str(part.get("text", ""))})
                else:
                    parts.append({"type": kind, "content": text_of(part)})
        for call in message.get("tool_calls") or ():
            if isinstance(call, Mapping):
                function = call.get("function") or {}
                parts.append(
                    {
                        "type": "tool_call",
                        "id": call.get("id"),
                        "name": function.get("name"),
                        "arguments": function.get("arguments"),
                    }
                )
        if message.get("role") == "tool":
            parts = [
                {
                    "type": "tool_call_response",
                    "id": message.get("tool_call_id"),
                    "response": content,
                }
            ]
        out.append({"role": str(message.get("role", "user")), "parts": parts})
    return out


def output_messages(text: str, finish_reason: Any = None) -> list[dict[str, Any]]:
    """The session's final answer as one assistant message in the conventions' shape."""
    message: dict[str, Any] = {"role": "assistant", "parts": [{"type": "text", "content": text}]}
    if finish_reason:
        message["finish_reason"] = str(finish_reason)
    return [message]
