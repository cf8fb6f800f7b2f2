"""What this installation of L0 has: plugins, what they register, and the configuration in force.

:func:`inventory` gathers it in one structure; ``l0 plugins`` prints it as tables and
``l0 plugins --json`` prints :meth:`Inventory.to_dict`, so both show the same data.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from l0.adapters import Adapters
from l0.config import ConfigValue, explain, load_config
from l0.drift import available_detectors
from l0.guardrails import available_guardrails

if TYPE_CHECKING:
    from l0.plugins import L0PluginManager

__all__ = ["Inventory", "Registered", "inventory"]


@dataclass(frozen=True, slots=True)
class Registered:
    """One named thing a plugin registered (a rule, a preset, a detector, a policy, an adapter).

    Attributes:
        name: The name config and code select it by.
        plugin: The plugin that registered it.
        description: One line, if the plugin gave one.
    """

    name: str
    plugin: str
    description: str = ""


@dataclass(frozen=True, slots=True)
class Inventory:
    """Everything ``l0 plugins`` lists.

    Attributes:
        plugins: Every loaded plugin (builtins first).
        adapters: Stream adapters, in the order they are asked.
        guardrail_rules: Named guardrail rules.
        guardrail_presets: Named guardrail presets.
        drift_detectors: Named drift detectors.
        retry_policies: Named retry policies.
        config: Every configuration key with its value and source (:func:`l0.config.explain`).
        config_file: The configuration file read, if any.
    """

    plugins: list[Any]
    adapters: list[Registered]
    guardrail_rules: list[Registered]
    guardrail_presets: list[Registered]
    drift_detectors: list[Registered]
    retry_policies: list[Registered]
    config: list[ConfigValue] = field(default_factory=list)
    config_file: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The inventory as JSON-ready data."""

        def named(items: list[Registered]) -> list[dict[str, str]]:
            return [
                {"name": i.name, "plugin": i.plugin, "description": i.description} for i in items
            ]

        return {
            "plugins": [
                {
                    "name": p.name,
                    "distribution": p.origin,
                    "version": p.version,
                    "builtin": p.builtin,
                    "hooks": list(p.hooks),
                }
                for p in self.plugins
            ],
            "adapters": named(self.adapters),
            "guardrail_rules": named(self.guardrail_rules),
            "guardrail_presets": named(self.guardrail_presets),
            "drift_detectors": named(self.drift_detectors),
            "retry_policies": named(self.retry_policies),
            "config": [
                {
                    "key": c.key,
                    "value": _plain(c.value),
                    "source": c.source,
                    "location": c.location,
                }
                for c in self.config
            ],
            "config_file": self.config_file,
        }


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(getattr(value, "value", value))


def _adapters(pm: L0PluginManager) -> list[Registered]:
    found = [
        Registered(a.name, "in-process", "registered with l0.Adapters")
        for a in Adapters.registered()
    ]
    for impl in reversed(pm.hook.l0_detect_adapter.get_hookimpls()):
        doc = (getattr(impl.plugin, "__doc__", None) or "").strip().splitlines()
        found.append(Registered(impl.plugin_name, impl.plugin_name, doc[0] if doc else ""))
    return found


def inventory(
    plugins: L0PluginManager | None = None, *, cwd: str | os.PathLike[str] | None = None
) -> Inventory:
    """Gather the plugins, what they register, and the configuration in force.

    Args:
        plugins: The manager to describe; by default one built as ``l0.run`` builds it (config
            and ``L0_*`` switches applied).
        cwd: Where to look for the config file (the working directory by default).

    Raises:
        TypeError: ``plugins`` is not a plugin manager.
        ConfigError: the configuration is invalid.
        L0PluginError: a plugin failed to load or registers something wrong.
    """
    from l0.plugins import L0PluginManager, build_plugin_manager

    if plugins is not None and not isinstance(plugins, L0PluginManager):
        raise TypeError(
            f"inventory(plugins={plugins!r}): expected an l0.L0PluginManager or None "
            "(None builds one as l0.run does)"
        )
    settings = load_config(cwd)
    pm = plugins
    if pm is None:
        pm = build_plugin_manager(blocked=settings.plugins_disable, allow=settings.plugins_load)
    rules, presets = available_guardrails(pm)
    return Inventory(
        plugins=pm.list_plugins(),
        adapters=_adapters(pm),
        guardrail_rules=[Registered(n, p, d) for n, (p, d) in sorted(rules.items())],
        guardrail_presets=[Registered(n, p, d) for n, (p, d) in sorted(presets.items())],
        drift_detectors=[
            Registered(name, plugin, spec.description)
            for name, (spec, plugin) in sorted(available_detectors(pm).items())
        ],
        retry_policies=[
            Registered(name, plugin, spec.summary)
            for name, (spec, plugin) in sorted(pm.retry_policies().items())
        ],
        config=explain(cwd, plugins=pm),
        config_file=str(settings.file) if settings.file is not None else None,
    )
