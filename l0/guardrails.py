"""Guardrails: rules that check streaming output without rewriting it.

The kernel defines the rule type, the engine a session runs and the registry through which
plugins offer named rules and presets; the rules themselves live in plugins (``l0-guardrails``
ships the standard set). A session asks the engine for one *run* per attempt::

    run = engine.start(emit)            # emit: None, or emit(kind, **fields) for events
    run.feed(delta, state)              # every few tokens: the text added since the last call
    run.finish(state)                   # once, when the stream completed
    engine.validate(text)               # a checkpoint, before a continuation uses it

Cost model (the hot-path rule of DESIGN.md): a rule with a ``session`` factory keeps its own
incremental state and sees only the delta, so its total cost grows linearly with the output.
A rule with only a ``check`` function gets a :class:`GuardrailContext`; while the output is
short, or when the check never reads ``context.content``, it runs inline. Once such a check has
read the whole content and the content is past ``fast_limit`` characters, it moves to a
deferred slow path: it is scheduled with ``loop.call_soon`` on a snapshot, thinned so that the
snapshots grow geometrically (total work stays linear), and its violations are applied at the
next check or at the end. The stream loop never waits for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from l0._guardrail_engine import (
    GuardrailEngine,
    GuardrailRun,
    create_guardrail_engine,
    run_async_guardrail_check,
    run_guardrail_check_async,
)
from l0._guardrail_registry import (
    PLUGIN_HINT,
    PresetSpec,
    RuleSpec,
    _build_preset,
    _build_rule,
    _manager,
    _registry,
    available_guardrails,
    resolve_guardrails,
)
from l0._guardrail_types import (
    DEFAULT_FAST_LIMIT,
    SEVERITIES,
    GuardrailContext,
    GuardrailPreset,
    GuardrailResult,
    GuardrailRule,
    RuleSession,
)

if TYPE_CHECKING:
    from l0.plugins import L0PluginManager


__all__ = [
    "DEFAULT_FAST_LIMIT",
    "PLUGIN_HINT",
    "SEVERITIES",
    "GuardrailContext",
    "GuardrailEngine",
    "GuardrailPreset",
    "GuardrailResult",
    "GuardrailRule",
    "GuardrailRun",
    "Guardrails",
    "PresetSpec",
    "RuleSession",
    "RuleSpec",
    "available_guardrails",
    "create_guardrail_engine",
    "custom_pattern_rule",
    "json_rule",
    "markdown_rule",
    "pattern_rule",
    "repetition_rule",
    "resolve_guardrails",
    "run_async_guardrail_check",
    "run_guardrail_check_async",
    "stall_rule",
    "strict_json_rule",
    "zero_output_rule",
]


def json_rule(*, plugins: L0PluginManager | None = None, **options: Any) -> GuardrailRule:
    """Balanced JSON structure, checked incrementally while streaming (``l0-guardrails``)."""
    return _build_rule("json", options, _manager(plugins))


def strict_json_rule(*, plugins: L0PluginManager | None = None, **options: Any) -> GuardrailRule:
    """JSON that is complete and parseable at the end, plus the streaming structure checks."""
    return _build_rule("strict_json", options, _manager(plugins))


def markdown_rule(*, plugins: L0PluginManager | None = None, **options: Any) -> GuardrailRule:
    """Markdown whose code fences are closed by the end of the output."""
    return _build_rule("markdown", options, _manager(plugins))


def pattern_rule(
    patterns: Sequence[Any] | None = None,
    *,
    plugins: L0PluginManager | None = None,
    **options: Any,
) -> GuardrailRule:
    """Meta statements ("As an AI language model") and refusals; ``patterns`` replaces the list."""
    if patterns is not None:
        options["patterns"] = patterns
    return _build_rule("pattern", options, _manager(plugins))


def custom_pattern_rule(
    patterns: Sequence[Any],
    *,
    plugins: L0PluginManager | None = None,
    **options: Any,
) -> GuardrailRule:
    """Your own regular expressions (``message=``, ``severity=``, ``name=`` optional)."""
    return _build_rule("custom_pattern", {"patterns": patterns, **options}, _manager(plugins))


def zero_output_rule(*, plugins: L0PluginManager | None = None, **options: Any) -> GuardrailRule:
    """Empty or whitespace-only output (a completion with only tool calls passes)."""
    return _build_rule("zero_output", options, _manager(plugins))


def stall_rule(*, plugins: L0PluginManager | None = None, **options: Any) -> GuardrailRule:
    """Tokens keep arriving but carry no visible text."""
    return _build_rule("stall", options, _manager(plugins))


def repetition_rule(*, plugins: L0PluginManager | None = None, **options: Any) -> GuardrailRule:
    """The model is looping: the same text keeps coming back."""
    return _build_rule("repetition", options, _manager(plugins))


class Guardrails:
    """Presets and rule factories, all resolved through the plugin registry.

    Presets (``l0-guardrails``): ``minimal``, ``recommended``, ``strict``, ``json_only``,
    ``markdown_only``; ``none`` needs no plugin. Rules: ``json``, ``strict_json``,
    ``markdown``, ``pattern``, ``custom_pattern``, ``zero_output``, ``stall``,
    ``repetition``, plus whatever other plugins register (``Guardrails.rule(name)``).
    """

    json = staticmethod(json_rule)
    strict_json = staticmethod(strict_json_rule)
    markdown = staticmethod(markdown_rule)
    pattern = staticmethod(pattern_rule)
    custom_pattern = staticmethod(custom_pattern_rule)
    zero_output = staticmethod(zero_output_rule)
    stall = staticmethod(stall_rule)
    repetition = staticmethod(repetition_rule)

    @staticmethod
    def rule(name: str, *, plugins: L0PluginManager | None = None, **options: Any) -> GuardrailRule:
        """Any registered rule by name."""
        return _build_rule(name, options, _manager(plugins))

    @staticmethod
    def preset(name: str, *, plugins: L0PluginManager | None = None) -> GuardrailPreset:
        """Any registered preset by name."""
        return _build_preset(name, _manager(plugins))

    @staticmethod
    def names(*, plugins: L0PluginManager | None = None) -> dict[str, list[str]]:
        """Registered rule and preset names: ``{"rules": [...], "presets": [...]}``."""
        registry = _registry(_manager(plugins))
        return {"rules": sorted(registry.rules), "presets": sorted(registry.presets)}

    @staticmethod
    def minimal(*, plugins: L0PluginManager | None = None) -> GuardrailPreset:
        """``json`` + ``zero_output``: catches broken JSON and empty answers only."""
        return _build_preset("minimal", _manager(plugins))

    @staticmethod
    def recommended(*, plugins: L0PluginManager | None = None) -> GuardrailPreset:
        """``json`` + ``markdown`` + ``zero_output`` + ``pattern``."""
        return _build_preset("recommended", _manager(plugins))

    @staticmethod
    def strict(*, plugins: L0PluginManager | None = None) -> GuardrailPreset:
        """Recommended + ``strict_json`` (when the output is JSON) + ``repetition`` + ``stall``."""
        return _build_preset("strict", _manager(plugins))

    @staticmethod
    def json_only(*, plugins: L0PluginManager | None = None) -> GuardrailPreset:
        """One complete JSON document: ``strict_json`` + ``zero_output``."""
        return _build_preset("json_only", _manager(plugins))

    @staticmethod
    def markdown_only(*, plugins: L0PluginManager | None = None) -> GuardrailPreset:
        """``markdown`` + ``zero_output``."""
        return _build_preset("markdown_only", _manager(plugins))

    @staticmethod
    def none() -> GuardrailPreset:
        """No rules at all (needs no plugin)."""
        return GuardrailPreset("none", ())
