"""Adapter registry: adapters registered at run time, then plugins' ``l0_detect_adapter``."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, ClassVar

from l0.types import Adapter

if TYPE_CHECKING:
    from l0.plugins import L0PluginManager

__all__ = ["Adapters"]


class Adapters:
    """Adapters registered in-process with :meth:`register`, asked before plugin adapters.

    The most recently registered adapter is asked first, so an application can override an
    installed adapter for its own stream types.
    """

    _registered: ClassVar[list[Adapter]] = []
    _lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def register(cls, adapter: Adapter) -> Adapter:
        """Register ``adapter`` for auto-detection; returns it (usable as a decorator on instances).

        Raises:
            TypeError: ``adapter`` lacks ``name``, ``detect`` or ``wrap``.
        """
        missing = [
            attr
            for attr in ("name", "detect", "wrap")
            if not hasattr(adapter, attr)
            or (attr != "name" and not callable(getattr(adapter, attr)))
        ]
        if missing:
            raise TypeError(
                f"Adapters.register(adapter={adapter!r}): missing {', '.join(missing)}; an adapter "
                "has a name, detect(stream) -> bool and wrap(stream) -> AsyncIterator[Event]"
            )
        name: object = getattr(adapter, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(
                f"Adapters.register: adapter.name must be a non-empty str, got {name!r}"
            )
        with cls._lock:
            cls._registered = [a for a in cls._registered if a.name != adapter.name]
            cls._registered.append(adapter)
        return adapter

    @classmethod
    def unregister(cls, name: str) -> None:
        """Remove the adapter registered under ``name`` (no error if absent)."""
        with cls._lock:
            cls._registered = [a for a in cls._registered if a.name != name]

    @classmethod
    def registered(cls) -> list[Adapter]:
        """Adapters registered in-process, newest first."""
        return list(reversed(cls._registered))

    @classmethod
    def detect(cls, stream: Any, plugins: L0PluginManager) -> Adapter | None:
        """The adapter for ``stream``: registered ones first, then plugins, else ``None``."""
        for adapter in reversed(cls._registered):
            if adapter.detect(stream):
                return adapter
        return plugins.hooks.detect_adapter(stream)

    @classmethod
    def names(cls, plugins: L0PluginManager) -> list[str]:
        """Names of every adapter that would be asked, for error messages."""
        names = [a.name for a in reversed(cls._registered)]
        impls = reversed(plugins.hook.l0_detect_adapter.get_hookimpls())
        names.extend(f"{impl.plugin_name} (plugin)" for impl in impls)
        return names
