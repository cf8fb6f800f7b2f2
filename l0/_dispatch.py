"""Per-manager hook tables, resolved once so sessions never pay for hooks nobody implements.

A pluggy call costs about a microsecond even with no implementation; a loop over a prebuilt
tuple is an order of magnitude cheaper, and an empty tuple lets the session skip building the
arguments at all.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pluggy

from l0.errors import L0PluginError
from l0.plugins import L0PluginManager

log = logging.getLogger("l0")

LIFECYCLE_HOOKS = (
    "l0_on_start",
    "l0_on_complete",
    "l0_on_error",
    "l0_on_violation",
    "l0_on_retry",
    "l0_on_fallback",
    "l0_on_resume",
    "l0_on_checkpoint",
    "l0_on_timeout",
    "l0_on_abort",
    "l0_on_drift",
    "l0_on_tool_call",
)


def compile_hook(caller: pluggy.HookCaller) -> tuple[Callable[..., Any], ...]:
    """Turn a broadcast hook into a tuple of plain callables, in pluggy's call order."""
    impls = caller.get_hookimpls()
    for impl in impls:
        if impl.wrapper or impl.hookwrapper:
            raise L0PluginError(
                f"{caller.name}: plugin {impl.plugin_name!r} registers a wrapper; broadcast hooks "
                "run on the session path and take plain functions only"
            )
    return tuple(impl.function for impl in reversed(impls))


def _types_of(function: Callable[..., Any]) -> frozenset[str] | None:
    types = getattr(function, "l0_event_types", None)
    return None if types is None else frozenset(str(t) for t in types)


def export_types(functions: tuple[Callable[..., Any], ...]) -> frozenset[str] | None:
    """The event types the exporters want: the union of their ``l0_event_types``.

    ``None`` (every type) as soon as one exporter does not say, so nothing is lost.
    """
    wanted: set[str] = set()
    for function in functions:
        types = _types_of(function)
        if types is None:
            return None
        wanted.update(types)
    return frozenset(wanted)


def content_probes(functions: tuple[Callable[..., Any], ...]) -> tuple[Any, ...]:
    """The ``l0_wants_content`` declarations of the exporters that make one.

    Each is ``True`` or a no-argument callable asked once per session (so a setting such as
    ``capture_content`` can change without rebuilding the table).
    """
    return tuple(
        probe for function in functions if (probe := getattr(function, "l0_wants_content", None))
    )


@dataclass(frozen=True, slots=True)
class HookTable:
    """What a session needs from the plugin manager, looked up once.

    Attributes:
        export: ``l0_export_event`` implementations, called in order for each event.
        export_types: The event types they asked for (``l0_event_types``), ``None`` for all.
        export_filters: For each of ``export``, its own types, or ``None`` for all.
        lifecycle: For each ``l0_on_*`` hook that has implementations, its pluggy caller.
        guardrail_check: True when some plugin implements ``l0_guardrail_check``.
        content: The exporters' ``l0_wants_content`` probes (see :meth:`wants_content`).
        export_pairs: ``export`` zipped with ``export_filters`` (built once, not per event).
        version: The manager version the table was built from.
    """

    export: tuple[Callable[..., Any], ...]
    export_types: frozenset[str] | None
    export_filters: tuple[frozenset[str] | None, ...]
    lifecycle: dict[str, pluggy.HookCaller]
    guardrail_check: bool
    version: int
    content: tuple[Any, ...] = ()
    export_pairs: tuple[tuple[Callable[..., Any], frozenset[str] | None], ...] = ()

    def wants_content(self) -> bool:
        """Whether an exporter asks for prompt and completion text in this session."""
        for probe in self.content:
            try:
                if probe is True or (callable(probe) and probe()):
                    return True
            except Exception:
                log.exception("l0: an l0_wants_content probe raised; treated as false")
        return False

    @classmethod
    def build(cls, pm: L0PluginManager) -> HookTable:
        """Resolve the tables of ``pm``."""
        lifecycle = {}
        for name in LIFECYCLE_HOOKS:
            caller = getattr(pm.hook, name)
            if caller.get_hookimpls():
                lifecycle[name] = caller
        export = compile_hook(pm.hook.l0_export_event)
        filters = tuple(_types_of(function) for function in export)
        return cls(
            export=export,
            export_types=export_types(export),
            export_filters=filters,
            lifecycle=lifecycle,
            guardrail_check=bool(pm.hook.l0_guardrail_check.get_hookimpls()),
            version=pm.version,
            content=content_probes(export),
            export_pairs=tuple(zip(export, filters, strict=True)),
        )


_tables: weakref.WeakKeyDictionary[L0PluginManager, HookTable] = weakref.WeakKeyDictionary()


def hook_table(pm: L0PluginManager) -> HookTable:
    """The cached table of ``pm``, rebuilt when plugins were registered or removed since."""
    table = _tables.get(pm)
    if table is None or table.version != pm.version or pm.get_hookcallers is None:
        table = HookTable.build(pm)
        _tables[pm] = table
    return table
