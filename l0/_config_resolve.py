"""The retry and timeout policies in force for a run: an argument, else the configuration.

Split from :mod:`l0.config`, which re-exports these names; this module needs the settings only
as a type, so it imports nothing from there at run time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from l0._config_schema import _did_you_mean
from l0.errors import ConfigError
from l0.retry import Retry
from l0.timeout import DEFAULT_INITIAL_TOKEN, DEFAULT_INTER_TOKEN, Timeout
from l0.types import BackoffStrategy

if TYPE_CHECKING:
    from l0.config import Settings
    from l0.plugins import L0PluginManager

__all__ = ["DEFAULT_RETRY_POLICY", "check_strategy", "resolve_retry", "resolve_timeout"]

DEFAULT_RETRY_POLICY: Final = "fixed-jitter"
"""The retry policy used when neither the argument nor the configuration names one."""

_RETRY_NUMBERS: Final = (
    "attempts",
    "max_retries",
    "base_delay",
    "max_delay",
    "max_retry_after",
    "seed",
    "strategy",
    "fallback_on",
)

_BUILTIN_STRATEGIES: Final = ", ".join(s.value for s in BackoffStrategy)


def _strategy_error(prefix: str, name: str, key: str, source: str) -> ConfigError:
    hint = _did_you_mean(name, [s.value for s in BackoffStrategy])
    return ConfigError(
        f"{prefix}: no such backoff strategy{hint}; choose one of {_BUILTIN_STRATEGIES} "
        "(any case, '_' or '-'), or a name a plugin computes through l0_backoff_delay",
        key=key,
        value=name,
        source=source,
    )


def check_strategy(policy: Retry, plugins: L0PluginManager, *, where: str | None = None) -> None:
    """Fail unless a builtin formula or a backoff plugin computes ``policy.strategy``.

    Args:
        policy: The retry policy to check.
        plugins: The plugin manager whose ``l0_backoff_delay`` implementations are asked.
        where: The config source of the strategy; ``None`` when ``policy`` is an argument.

    Raises:
        ConfigError: nothing computes the strategy; the message names the source, the value
            and the builtin names.
    """
    strategy = policy.strategy
    if isinstance(strategy, BackoffStrategy) or plugins.computes_strategy(policy):
        return
    if where is None:
        prefix = f"retry=Retry(strategy={strategy!r})"
        raise _strategy_error(prefix, strategy, "retry.strategy", "argument")
    raise _strategy_error(
        f"{where}: retry.strategy = {strategy!r}", strategy, "retry.strategy", where
    )


def _find_policy(name: str, plugins: L0PluginManager) -> str | None:
    policies = plugins.retry_policies()
    if name in policies:
        return name
    normalized = name.strip().lower().replace("_", "-")
    return normalized if normalized in policies else None


def resolve_retry(argument: Retry | None, settings: Settings, plugins: L0PluginManager) -> Retry:
    """The ``Retry`` in force: the argument, else the configured policy with configured numbers.

    The strategy is checked here, so a misspelt one fails when ``l0.run`` is called rather than
    at the first retry (where it would hide the provider's error).

    Raises:
        ConfigError: the configured policy is not registered by any plugin, it rejected the
            configured values, or no builtin formula or plugin computes the strategy.
    """
    if argument is not None:
        check_strategy(argument, plugins)
        return argument
    cache_key = ("retry", plugins, plugins.version)
    cached: Retry | None = settings._resolved.get(cache_key)
    if cached is not None:
        return cached
    configured = settings.get("retry", "policy", DEFAULT_RETRY_POLICY)
    name = _find_policy(configured, plugins)
    if name is None:
        source = settings.sources.get("retry.policy", "default")
        raise ConfigError(
            f"{source}: retry.policy = {configured!r}: no such policy"
            f"{_did_you_mean(configured, list(plugins.retry_policies()))}; choose one of: "
            f"{plugins.describe_policies()}",
            key="retry.policy",
            value=configured,
            source=source,
        )
    policies = plugins.retry_policies()
    overrides = {
        k: settings.get("retry", k) for k in _RETRY_NUMBERS if settings.get("retry", k) is not None
    }
    spec, offered_by = policies[name]
    try:
        policy = spec.factory(overrides)
    except (TypeError, ValueError) as exc:
        where = ", ".join(f"{k} from {settings.sources[f'retry.{k}']}" for k in overrides)
        raise ConfigError(
            f"retry policy {name!r} rejected the configured values ({where}; policy from "
            f"plugin {offered_by!r}): {exc}",
            key="retry.policy",
            value=name,
        ) from exc
    if not isinstance(policy, Retry):
        raise ConfigError(
            f"retry policy {name!r} (from plugin {offered_by!r}) returned "
            f"{type(policy).__name__}; expected l0.Retry"
        )
    check_strategy(
        policy,
        plugins,
        where=settings.sources.get("retry.strategy", f"retry policy {name!r} ({offered_by})"),
    )
    settings._resolved[cache_key] = policy
    return policy


def resolve_timeout(argument: Timeout | None, settings: Settings) -> Timeout:
    """The ``Timeout`` in force: the argument, else configured values, else the defaults."""
    if argument is not None:
        return argument
    cached: Timeout | None = settings._resolved.get("timeout")
    if cached is not None:
        return cached
    values = settings.values.get("timeout", {})
    timeout = Timeout(
        initial_token=values.get("initial_token", DEFAULT_INITIAL_TOKEN),
        inter_token=values.get("inter_token", DEFAULT_INTER_TOKEN),
        total=values.get("total"),
    )
    settings._resolved["timeout"] = timeout
    return timeout
