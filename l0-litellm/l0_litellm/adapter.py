"""The adapter for LiteLLM streams (``litellm.acompletion(..., stream=True)``)."""

from __future__ import annotations

from typing import Any

from l0.tool_calls import ChatChunkReader, ChunkStream

__all__ = ["LiteLLMAdapter"]


class LiteLLMAdapter:
    """L0 adapter for LiteLLM's ``CustomStreamWrapper``.

    LiteLLM turns every provider's stream into OpenAI-shaped chunks (``ModelResponseStream``
    with ``choices[0].delta.content``/``tool_calls``, ``finish_reason`` and ``usage``), so the
    shared :class:`~l0.tool_calls.ChatChunkReader` reads them: text exactly as sent, each tool
    call once with its whole arguments, usage and ``finish_reason`` in the ``COMPLETE`` event,
    and every chunk in ``result.raw()``.

    Detection matches the class by name and module, so it never imports LiteLLM and works
    across the versions that moved ``CustomStreamWrapper`` between modules.

    Args:
        require_finish_reason: Treat a stream that ends without a ``finish_reason`` as a cut
            connection and retry it.
    """

    name = "litellm"

    def __init__(self, *, require_finish_reason: bool = True) -> None:
        self.require_finish_reason = require_finish_reason

    def detect(self, stream: Any) -> bool:
        """True for LiteLLM's ``CustomStreamWrapper`` (and subclasses)."""
        for cls in type(stream).__mro__:
            if cls.__name__ == "CustomStreamWrapper" and cls.__module__.startswith("litellm"):
                return True
        return False

    def wrap(self, stream: Any) -> ChunkStream:
        """Return the iterator of L0 tokens and events for ``stream``."""
        return ChunkStream(
            stream, ChatChunkReader(require_finish_reason=self.require_finish_reason)
        )
