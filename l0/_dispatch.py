"""Per-manager hook tables, resolved once so sessions never pay for hooks nobody implements.

A pluggy call costs about a microsecond even with no implementation; a loop over a prebuilt
tuple is an order of magnitude cheaper, and an empty tuple lets the session skip building the
arguments at all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
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


def _is_active(probe: Any) -> bool:
    if not callable(probe):
        return bool(probe)
    try:
        return bool(probe())
    except Exception:
        # Delivering to an exporter that would have dropped the events is the safe mistake.
        log.exception("l0: an l0_active probe raised; treated as true")
        return True


@dataclass(frozen=True, slots=True)
class ExportView:
    """The exporters one session delivers to: those whose ``l0_active`` probe said yes.

    Attributes:
        pairs: Each exporter with its own event types (``None`` for all), in call order.
        types: The union of their types; ``None`` when one takes every type.
        content: Their ``l0_wants_content`` probes.
    """

    pairs: tuple[tuple[Callable[..., Any], frozenset[str] | None], ...]
    types: frozenset[str] | None
    content: tuple[Any, ...]

    @classmethod
    def of(cls, export: tuple[Callable[..., Any], ...]) -> ExportView:
        """The view of ``export`` (a subset of a manager's exporters, in call order)."""
        return cls(
            pairs=tuple((function, _types_of(function)) for function in export),
            types=export_types(export),
            content=content_probes(export),
        )

    def wants_content(self) -> bool:
        """Whether one of these exporters asks for prompt and completion text now."""
        for probe in self.content:
            try:
                if probe is True or (callable(probe) and probe()):
                    return True
            except Exception:
                log.exception("l0: an l0_wants_content probe raised; treated as false")
        return False


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
        active: For each of ``export``, its ``l0_active`` probe (``None``: always active);
            empty when no exporter has one.
        views: The :class:`ExportView` per combination of probe answers (filled on use).
    """

    export: tuple[Callable[..., Any], ...]
    export_types: frozenset[str] | None
    export_filters: tuple[frozenset[str] | None, ...]
    lifecycle: dict[str, pluggy.HookCaller]
    guardrail_check: bool
    version: int
    content: tuple[Any, ...] = ()
    export_pairs: tuple[tuple[Callable[..., Any], frozenset[str] | None], ...] = ()
    active: tuple[Any, ...] = ()
    views: dict[tuple[bool, ...], ExportView] = field(default_factory=dict, compare=False)

    def wants_content(self) -> bool:
        """Whether an exporter asks for prompt and completion text in this session."""
        return ExportView(self.export_pairs, self.export_types, self.content).wants_content()

    def session_view(self) -> ExportView:
        """The exporters a session starting now delivers to (each ``l0_active`` asked once).

        An exporter whose backend is not set up (no tracer provider, no Sentry client) says
        no, and a session nobody else observes then builds no events at all.
        """
        probes = self.active
        flags = tuple([probe is None or _is_active(probe) for probe in probes])
        view = self.views.get(flags)
        if view is None:
            chosen = tuple(f for f, on in zip(self.export, flags, strict=True) if on)
            view = self.views[flags] = ExportView.of(chosen)
        return view

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
        active = tuple(getattr(function, "l0_active", None) for function in export)
        table = cls(
            export=export,
            export_types=export_types(export),
            export_filters=filters,
            lifecycle=lifecycle,
            guardrail_check=bool(pm.hook.l0_guardrail_check.get_hookimpls()),
            version=pm.version,
            content=content_probes(export),
            export_pairs=tuple(zip(export, filters, strict=True)),
            active=active if any(probe is not None for probe in active) else (),
        )
        # Without probes every session sees every exporter: one view, made now.
        table.views[()] = ExportView(table.export_pairs, table.export_types, table.content)
        return table


def hook_table(pm: L0PluginManager) -> HookTable:
    """The cached table of ``pm``, rebuilt when plugins were registered or removed since."""
    # Kept on the manager itself: a weak-keyed dict made a weak reference per lookup.
    table: HookTable | None = pm.__dict__.get("_l0_hook_table")
    if table is None or table.version != pm.version or pm.get_hookcallers is None:
        table = HookTable.build(pm)
        pm.__dict__["_l0_hook_table"] = table
    return table
