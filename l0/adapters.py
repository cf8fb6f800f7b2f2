"""Adapter registry: adapters registered at run time, then plugins' ``l0_detect_adapter``."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Mapping
from functools import cache
from importlib import metadata
from typing import TYPE_CHECKING, Any, ClassVar, Final

from l0.types import Adapter

if TYPE_CHECKING:
    from l0.plugins import L0PluginManager

__all__ = ["ADAPTER_DISTRIBUTIONS", "Adapters", "check_client_options", "install_hint"]

ADAPTER_DISTRIBUTIONS: Final = {
    "openai": ("l0-openai", "openai"),
    "litellm": ("l0-litellm", "litellm"),
}
"""Top-level SDK package -> (distribution that adapts it, its plugin name), for error messages."""


_NON_STREAMING: Final = {
    ("openai", "ChatCompletion"): "client.chat.completions.create(...)",
    ("openai", "Completion"): "client.completions.create(...)",
    ("openai", "Response"): "client.responses.create(...)",
    ("litellm", "ModelResponse"): "litellm.acompletion(...)",
}
"""Whole (non-streaming) answers of known SDKs -> the call that should get ``stream=True``."""


def _non_streaming(obj: object) -> str | None:
    package = type(obj).__module__.partition(".")[0]
    call = _NON_STREAMING.get((package, type(obj).__name__))
    if call is None:
        return None
    return (
        f"it is a non-streaming {type(obj).__name__}; pass stream=True to {call} (L0 reads "
        "streams, so it can retry, time out and check the answer while it arrives)"
    )


def install_hint(obj: object, plugins: L0PluginManager | None = None) -> str:
    """Say what to change so L0 can read ``obj``, an SDK answer, stream, chunk or client.

    A whole answer of a known SDK (``ChatCompletion``, LiteLLM's ``ModelResponse``) means
    ``stream=True`` was forgotten, and the hint says so. For other objects of a known SDK it
    names the adapter distribution (``pip install l0-openai``); when that is installed it says
    whether its plugin is loaded in ``plugins`` (checked, not assumed).
    """
    non_streaming = _non_streaming(obj)
    if non_streaming is not None:
        return non_streaming
    package = type(obj).__module__.partition(".")[0]
    known = ADAPTER_DISTRIBUTIONS.get(package)
    if known is None:
        return (
            "return an async iterator of str tokens, install the adapter distribution for your "
            "SDK (pip install l0-openai / l0-litellm), pass adapter=..., or register one with "
            "l0.Adapters.register(MyAdapter())"
        )
    distribution, plugin = known
    hint = (
        f"L0 reads {package} objects through the {distribution} plugin: pip install {distribution}"
    )
    try:
        metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return hint
    if plugins is None:
        return (
            f"{distribution} is installed; check that its plugin {plugin!r} is loaded "
            "(L0_DISABLE_PLUGINS, L0_LOAD_PLUGINS, the plugins= manager)"
        )
    if plugins.get_plugin(plugin) is not None:
        return (
            f"its plugin {plugin!r} is loaded but does not read {type(obj).__qualname__} "
            f"objects: pass the SDK's stream (the result of a stream=True call)"
        )
    if plugins.is_blocked(plugin):
        return (
            f"{distribution} is installed, but its plugin {plugin!r} is disabled "
            "(L0_DISABLE_PLUGINS or plugins.disable)"
        )
    return (
        f"{distribution} is installed, but its plugin {plugin!r} is not loaded in this plugin "
        "manager: check L0_LOAD_PLUGINS / plugins.load, and build_plugin_manager(entry_points="
        "False), which loads no installed plugin"
    )


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


@cache
def _run_options() -> frozenset[str]:
    import l0

    return frozenset(inspect.signature(l0.run).parameters) - {"stream"}


def check_client_options(
    options: Mapping[str, Any] | None, where: str, extra: frozenset[str]
) -> dict[str, Any]:
    """Check the L0 options a wrapped SDK client was given; return them as a new dict.

    For adapter plugins that wrap a client (``l0.wrap(client, **options)``): ``options`` may
    hold any ``l0.run`` keyword except ``stream``, plus the wrapper's own ``extra`` names.
    ``fallback_models``, when given, must be a list of model names.

    Raises:
        TypeError: Naming ``where``, the unknown options and the allowed ones, or the bad value.
    """
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise TypeError(f"{where}={options!r}: expected a dict of l0.run options")
    allowed = _run_options() | extra
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise TypeError(
            f"{where}: unknown L0 option(s) {', '.join(map(repr, unknown))}; choose from "
            + ", ".join(sorted(allowed))
        )
    models = options.get("fallback_models")
    if models is not None and (
        isinstance(models, str) or not all(isinstance(m, str) for m in models)
    ):
        raise TypeError(f"{where}: fallback_models={models!r}: expected a list of model names")
    return dict(options)
