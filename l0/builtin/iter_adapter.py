"""Builtin adapter for plain async iterators of ``str`` tokens and ``l0.Event`` items."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from l0.plugins import detects_by_type, hookimpl
from l0.types import Adapter, Event


class IterAdapter:
    """Takes any async iterable whose items are ``str`` (tokens) or :class:`~l0.types.Event`.

    The runtime consumes the iterator directly, with no extra generator layer, so the plain
    string path costs nothing beyond L0's own bookkeeping.
    """

    name = "iter"

    def detect(self, stream: Any) -> bool:
        """Any object with ``__aiter__``."""
        return hasattr(type(stream), "__aiter__")

    def wrap(self, stream: Any) -> AsyncIterator[Event | str]:
        """Return the stream's own iterator."""
        iterator: AsyncIterator[Event | str] = stream.__aiter__()
        return iterator


ADAPTER = IterAdapter()


@hookimpl(trylast=True)
@detects_by_type
def l0_detect_adapter(stream: Any) -> Adapter | None:
    """Claim any async iterable; other adapters are asked first."""
    return ADAPTER if ADAPTER.detect(stream) else None
