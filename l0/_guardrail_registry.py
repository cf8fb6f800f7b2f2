"""The guardrail registry: rules and presets that plugins offer, and ``l0.run`` resolution.

Split from :mod:`l0.guardrails`, which re-exports every public name here.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from l0._guardrail_engine import GuardrailEngine
from l0._guardrail_types import GuardrailContext, GuardrailPreset, GuardrailRule, Violations
from l0.errors import ConfigError, L0PluginError

if TYPE_CHECKING:
    from l0.config import Settings
    from l0.plugins import L0PluginManager

PLUGIN_HINT: Final = (
    "pip install l0-guardrails (or, if it is installed, remove 'guardrails' from "
    "plugins.disable / L0_DISABLE_PLUGINS)"
)
# Names the l0-guardrails distribution provides: a lookup of one of these that finds nothing
# means the plugin is missing, which deserves an install hint rather than "no such rule".
_STANDARD_RULES: Final = frozenset(
    {
        "json",
        "strict_json",
        "markdown",
        "pattern",
        "custom_pattern",
        "zero_output",
        "stall",
        "repetition",
    }
)
_STANDARD_PRESETS: Final = frozenset(
    {"minimal", "recommended", "strict", "json_only", "markdown_only"}
)


# --- registration records --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """A named rule a plugin offers through ``l0_register_guardrails``.

    Attributes:
        name: The name config and ``Guardrails.rule(name)`` use.
        factory: Builds the rule; keyword options (``severity=``…) are passed through.
        description: One line for listings and error messages.
    """

    name: str
    factory: Callable[..., GuardrailRule]
    description: str = ""


@dataclass(frozen=True, slots=True)
class PresetSpec:
    """A named preset a plugin offers through ``l0_register_guardrails``.

    Attributes:
        name: The name ``guardrails.preset`` and ``Guardrails.preset(name)`` use.
        rules: Names of registered rules, built with their defaults.
        factory: Alternatively, builds the rules itself (for rules with non-default options).
        description: One line for listings and docs.
    """

    name: str
    rules: tuple[str, ...] = ()
    factory: Callable[[], Sequence[GuardrailRule]] | None = None
    description: str = ""


@dataclass(frozen=True, slots=True)
class _Registry:
    rules: Mapping[str, tuple[RuleSpec, str]]
    presets: Mapping[str, tuple[PresetSpec, str]]
    labels: Mapping[str, str]
    version: int

    def describe(self, kind: str) -> str:
        table: Mapping[str, tuple[Any, str]] = self.rules if kind == "rule" else self.presets
        return (
            ", ".join(
                f"{name} ({self.labels.get(plugin, plugin)})"
                for name, (_, plugin) in sorted(table.items())
            )
            or "none registered"
        )


_registries: weakref.WeakKeyDictionary[L0PluginManager, _Registry] = weakref.WeakKeyDictionary()


def _registry(pm: L0PluginManager) -> _Registry:
    cached = _registries.get(pm)
    if cached is not None and cached.version == pm.version:
        return cached
    rules: dict[str, tuple[RuleSpec, str]] = {}
    presets: dict[str, tuple[PresetSpec, str]] = {}
    for impl in pm.hook.l0_register_guardrails.get_hookimpls():
        records: Any = impl.function()
        for record in records or ():
            if isinstance(record, RuleSpec):
                table: dict[str, Any] = rules
            elif isinstance(record, PresetSpec):
                table = presets
            else:
                raise L0PluginError(
                    f"plugin {impl.plugin_name!r}: l0_register_guardrails yielded {record!r}; "
                    "expected l0.guardrails.RuleSpec or PresetSpec"
                )
            if record.name in table:
                raise L0PluginError(
                    f"guardrail {'rule' if table is rules else 'preset'} {record.name!r} is "
                    f"offered by both {table[record.name][1]!r} and {impl.plugin_name!r}; "
                    "disable one of them"
                )
            table[record.name] = (record, impl.plugin_name)
    labels = {}
    for info in pm.list_plugins():
        labels[info.name] = (
            "builtin"
            if info.builtin
            else f"{info.origin} {info.version or ''}".strip()
            if info.origin != "in-process"
            else f"{info.name}, in-process"
        )
    registry = _Registry(rules, presets, labels, pm.version)
    _registries[pm] = registry
    return registry


def available_guardrails(
    pm: L0PluginManager,
) -> tuple[dict[str, tuple[str, str]], dict[str, tuple[str, str]]]:
    """Registered rules and presets: ``{name: (plugin, description)}`` for each.

    Raises:
        L0PluginError: a plugin registers something that is not a spec, or a name twice.
    """
    registry = _registry(pm)
    rules = {name: (plugin, spec.description) for name, (spec, plugin) in registry.rules.items()}
    presets = {
        name: (plugin, spec.description) for name, (spec, plugin) in registry.presets.items()
    }
    return rules, presets


def _manager(plugins: L0PluginManager | None) -> L0PluginManager:
    if plugins is not None:
        return plugins
    from l0.plugins import default_plugin_manager

    return default_plugin_manager()


def _unknown(kind: str, name: str, registry: _Registry, where: str) -> Exception:
    standard = _STANDARD_RULES if kind == "rule" else _STANDARD_PRESETS
    if name in standard:
        return L0PluginError(
            f"{where}guardrail {kind} {name!r} comes from the l0-guardrails plugin, which is "
            f"not loaded: {PLUGIN_HINT}"
        )
    hint = (
        ""
        if registry.rules or registry.presets
        else f" (no guardrail plugin is loaded: {PLUGIN_HINT})"
    )
    return ConfigError(
        f"{where}no such guardrail {kind} {name!r}; choose one of: {registry.describe(kind)}{hint}",
        value=name,
    )


def _build_rule(
    name: str, options: Mapping[str, Any], pm: L0PluginManager, where: str = ""
) -> GuardrailRule:
    registry = _registry(pm)
    entry = registry.rules.get(name)
    if entry is None:
        raise _unknown("rule", name, registry, where)
    spec, plugin = entry
    try:
        rule = spec.factory(**options)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{where}guardrail rule {name!r} (from {plugin!r}) rejected its options: {exc}"
        ) from exc
    if not isinstance(rule, GuardrailRule):
        raise L0PluginError(
            f"guardrail rule {name!r} (from plugin {plugin!r}) built {type(rule).__name__}; "
            "expected GuardrailRule"
        )
    return rule if rule.plugin is not None else dataclasses.replace(rule, plugin=plugin)


def _build_preset(name: str, pm: L0PluginManager, where: str = "") -> GuardrailPreset:
    if name == "none":
        return GuardrailPreset("none", ())
    registry = _registry(pm)
    entry = registry.presets.get(name)
    if entry is None:
        raise _unknown("preset", name, registry, where)
    spec, plugin = entry
    if spec.factory is not None:
        built = tuple(spec.factory())
        for rule in built:
            if not isinstance(rule, GuardrailRule):
                raise L0PluginError(
                    f"guardrail preset {name!r} (from plugin {plugin!r}) built {rule!r}; "
                    "expected GuardrailRule items"
                )
        rules = tuple(
            r if r.plugin is not None else dataclasses.replace(r, plugin=plugin) for r in built
        )
    else:
        rules = tuple(_build_rule(r, {}, pm, f"preset {name!r}: ") for r in spec.rules)
    return GuardrailPreset(name, rules)


# --- resolution from l0.run arguments and config ---------------------------------------------


def _plugin_rules(pm: L0PluginManager) -> list[GuardrailRule]:
    """``l0_guardrail_check`` implementations as check rules, resolved once per engine."""
    rules = []
    for impl in pm.hook.l0_guardrail_check.get_hookimpls():
        function = impl.function

        def check(context: GuardrailContext, _fn: Callable[..., Any] = function) -> Violations:
            found: Violations = _fn(context)
            return found

        rules.append(
            GuardrailRule(
                f"plugin:{impl.plugin_name}", check=check, streaming=True, plugin=impl.plugin_name
            )
        )
    return rules


def _check_options(
    options: Mapping[str, Mapping[str, Any]], pm: L0PluginManager, settings: Settings
) -> None:
    registry = _registry(pm)
    for name in options:
        if name not in registry.rules:
            source = settings.sources.get("guardrails.options", "config")
            raise ConfigError(
                f"{source}: guardrails.options names {name!r}, which is no registered rule; "
                f"choose one of: {registry.describe('rule')}",
                key="guardrails.options",
                value=name,
            )


def _with_options(
    rules: Sequence[GuardrailRule], options: Mapping[str, Mapping[str, Any]], pm: L0PluginManager
) -> list[GuardrailRule]:
    """A preset's rules, each rule named in config ``guardrails.options`` rebuilt with them."""
    if not options:
        return list(rules)
    where = "guardrails.options: "
    return [
        _build_rule(r.name, options[r.name], pm, where) if r.name in options else r for r in rules
    ]


def _collect(
    value: Any,
    pm: L0PluginManager,
    out: list[GuardrailRule],
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    options = options or {}
    if isinstance(value, GuardrailRule):
        out.append(value)
    elif isinstance(value, GuardrailPreset):
        out.extend(value.rules)
    elif isinstance(value, str):
        registry = _registry(pm)
        if value in registry.presets or value == "none":
            out.extend(_with_options(_build_preset(value, pm).rules, options, pm))
        elif value in registry.rules:
            out.append(_build_rule(value, options.get(value, {}), pm))
        elif value in _STANDARD_PRESETS:
            raise _unknown("preset", value, registry, "guardrails=: ")
        else:
            if value in _STANDARD_RULES:
                raise _unknown("rule", value, registry, "guardrails=: ")
            raise ConfigError(
                f"guardrails={value!r}: no such guardrail preset or rule; presets: "
                f"{registry.describe('preset')}; rules: {registry.describe('rule')}",
                value=value,
            )
    elif isinstance(value, Iterable) and not isinstance(value, bytes | Mapping):
        for item in value:
            if isinstance(item, GuardrailRule | GuardrailPreset | str):
                _collect(item, pm, out, options)
            else:
                raise TypeError(
                    f"guardrails=[..., {item!r}, ...]: expected GuardrailRule objects, "
                    "presets or rule names"
                )
    else:
        raise TypeError(
            f"guardrails={value!r}: expected a list of rules or rule names, a preset "
            "(l0.Guardrails.recommended()) or a preset name"
        )


def resolve_guardrails(
    value: Any, pm: L0PluginManager, settings: Settings
) -> GuardrailEngine | None:
    """The engine for ``l0.run(guardrails=value)``, or ``None`` when no rule applies.

    ``value`` may be ``None`` (use config: ``guardrails.preset`` then ``guardrails.rules``), a
    list of rules / rule names / presets, a preset or rule name, a preset object, or an engine.
    ``False`` and ``Guardrails.none()`` switch guardrails off. Config ``guardrails.severity``
    overrides severities by rule name either way. Plugins implementing ``l0_guardrail_check``
    are added as rules named ``plugin:<name>``.

    Raises:
        ConfigError: an unknown preset or rule name, or a severity for a rule not in use.
        L0PluginError: a standard rule or preset was asked for without ``l0-guardrails``.
    """
    if isinstance(value, GuardrailEngine):
        return value
    if value is False:
        return None
    explicit_none = isinstance(value, GuardrailPreset) and not value.rules
    rules: list[GuardrailRule] = []
    options: dict[str, dict[str, Any]] = dict(settings.get("guardrails", "options", {}) or {})
    if options:
        _check_options(options, pm, settings)
    if value is None:
        preset = settings.get("guardrails", "preset")
        if preset is not None:
            source = settings.sources.get("guardrails.preset", "config")
            where = f"{source}: guardrails.preset = {preset!r}: "
            rules.extend(_with_options(_build_preset(preset, pm, where).rules, options, pm))
        for name in settings.get("guardrails", "rules", []) or []:
            where = f"{settings.sources.get('guardrails.rules', 'config')}: guardrails.rules: "
            rules.append(_build_rule(name, options.get(name, {}), pm, where))
    else:
        _collect(value, pm, rules, options)
    severity: dict[str, Any] = dict(settings.get("guardrails", "severity", {}) or {})
    if severity:
        registry = _registry(pm)
        known = set(registry.rules) | {r.name for r in rules}
        for name, level in severity.items():
            if name not in known:
                source = settings.sources.get("guardrails.severity", "config")
                raise ConfigError(
                    f"{source}: guardrails.severity names {name!r} = {level!r}, which is no "
                    f"rule in use or registered; choose one of: "
                    f"{', '.join(sorted(known)) or 'none'}",
                    key="guardrails.severity",
                    value=name,
                )
    if not explicit_none:
        rules.extend(_plugin_rules(pm))
    if not rules:
        return None
    return GuardrailEngine(rules, severity=severity)
