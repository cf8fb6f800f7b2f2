"""The ``transport`` option of ``l0.wrap(AsyncOpenAI(...), transport=...)``."""

from __future__ import annotations

from typing import Any

from l0_openai.adapter import TRANSPORTS, OpenAIAdapter

__all__ = ["check_transport", "with_transport"]

_ADAPTERS: dict[str, OpenAIAdapter] = {}


def check_transport(value: Any, where: str) -> None:
    """Raise ``TypeError`` unless ``value`` is ``None`` or one of :data:`TRANSPORTS`."""
    if value is not None and value not in TRANSPORTS:
        raise TypeError(
            f"{where}: transport={value!r}: choose one of {', '.join(map(repr, TRANSPORTS))}"
        )


def with_transport(options: dict[str, Any]) -> None:
    """Turn ``transport`` in ``options`` into the ``adapter`` that reads streams that way.

    An explicit ``adapter`` option wins over ``transport``.
    """
    transport = options.pop("transport", None)
    if transport is None or options.get("adapter") is not None:
        return
    adapter = _ADAPTERS.get(transport)
    if adapter is None:
        adapter = _ADAPTERS[transport] = OpenAIAdapter(transport=transport)
    options["adapter"] = adapter
