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

import asyncio
import dataclasses
import itertools
import logging
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeAlias

from l0.errors import ConfigError, L0PluginError
from l0.types import GuardrailViolation, Severity, State

if TYPE_CHECKING:
    from l0.config import Settings
    from l0.plugins import L0PluginManager

__all__ = [
    "DEFAULT_FAST_LIMIT",
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

log = logging.getLogger("l0.guardrails")

_now = time.monotonic
SEVERITIES: Final = ("warning", "error", "fatal")
DEFAULT_FAST_LIMIT: Final = 5120
"""Characters of output below which every rule runs inline at each check."""
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

Violations: TypeAlias = "Sequence[GuardrailViolation] | None"
Emit: TypeAlias = "Callable[..., None]"


# --- rules -----------------------------------------------------------------------------------


class GuardrailContext:
    """What a rule's ``check`` function sees.

    ``content`` is the whole output so far (checkpoint prefix included). It is computed on
    first access, so a check that looks only at ``delta`` never pays for joining the text, and
    the engine keeps such checks on the fast path however long the output grows.

    Args:
        content: The text to check; when ``None`` it is read from ``state``.
        delta: Text added since the previous check (``""`` at the final check).
        completed: True at the final check, after the stream ended.
        token_count: Tokens so far; read from ``state`` when not given.
        state: The live session state, when the check runs inside a session.
    """

    __slots__ = ("_content", "_token_count", "_used", "completed", "delta", "state")

    def __init__(
        self,
        content: str | None = None,
        *,
        delta: str = "",
        completed: bool = False,
        token_count: int | None = None,
        state: State | None = None,
    ) -> None:
        self._content = content
        self._token_count = token_count
        self._used = False
        self.delta = delta
        self.completed = completed
        self.state = state

    @property
    def content(self) -> str:
        """The whole output so far."""
        self._used = True
        content = self._content
        if content is None:
            content = self._content = self.state.content if self.state is not None else ""
        return content

    @property
    def token_count(self) -> int:
        """Tokens so far (``0`` when unknown)."""
        if self._token_count is not None:
            return self._token_count
        return self.state.token_count if self.state is not None else 0

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        """Complete tool calls received so far."""
        return self.state.tool_calls if self.state is not None else []

    def __repr__(self) -> str:
        return (
            f"GuardrailContext(delta={self.delta!r:.40}, completed={self.completed}, "
            f"token_count={self.token_count})"
        )


class RuleSession(Protocol):
    """Incremental per-attempt state of a rule (what ``GuardrailRule.session`` returns)."""

    def feed(self, delta: str, state: State | None) -> Violations:
        """Take the text added since the last call; return violations found in it."""
        ...

    def finish(self, context: GuardrailContext) -> Violations:
        """The stream ended: return violations of the whole output."""
        ...


@dataclass(frozen=True, slots=True)
class GuardrailRule:
    """One guardrail.

    A rule gives a ``check`` function, a ``session`` factory, or both:

    * ``check(context)`` looks at a :class:`GuardrailContext` (``content``, ``delta``,
      ``completed``, ``token_count``, ``state``) and returns a list of violations. A function
      written for a ``State`` works too: it only needs ``.content``.
    * ``session(rule)`` returns a :class:`RuleSession` for one attempt; its ``feed`` sees only
      the new text, which keeps a rule O(len(delta)) per check. When both are given the
      session is used while streaming and at the end.

    Attributes:
        name: Name used in violations, events and config (``guardrails.severity``).
        check: Full check over a context.
        streaming: Check while tokens arrive; otherwise only once the stream completed.
        severity: Default severity of its violations: ``warning`` (recorded), ``error``
            (retried, counts toward ``Retry.attempts``) or ``fatal`` (stops at once).
        recoverable: Whether a retry may fix it; ``False`` stops without retrying.
        description: One line for listings and docs.
        session: Factory of the incremental state for one attempt.
    """

    name: str
    check: Callable[[GuardrailContext], Violations] | None = None
    streaming: bool = False
    severity: Severity = "error"
    recoverable: bool = True
    description: str = ""
    session: Callable[[GuardrailRule], RuleSession] | None = None

    def __post_init__(self) -> None:
        name: object = self.name
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"GuardrailRule(name={self.name!r}): expected a non-empty name")
        if self.severity not in SEVERITIES:
            raise ValueError(
                f"guardrail rule {self.name!r}: severity={self.severity!r} is not allowed; "
                f"choose one of {', '.join(SEVERITIES)}"
            )
        if self.check is None and self.session is None:
            raise ValueError(f"guardrail rule {self.name!r}: give check=... or session=...")
        for label, fn in (("check", self.check), ("session", self.session)):
            if fn is not None and not callable(fn):
                raise TypeError(f"guardrail rule {self.name!r}: {label}={fn!r} is not callable")

    def violation(
        self, message: str, *, position: int | None = None, severity: Severity | None = None
    ) -> GuardrailViolation:
        """A violation of this rule with its severity and recoverability."""
        return GuardrailViolation(
            rule=self.name,
            message=message,
            severity=severity or self.severity,
            recoverable=self.recoverable,
            position=position,
        )


@dataclass(frozen=True, slots=True)
class GuardrailResult:
    """The outcome of a one-shot check (:func:`run_async_guardrail_check` and friends).

    Attributes:
        violations: Everything found.
        passed: No violations at all.
        should_retry: Some violation is a recoverable ``error`` and none is fatal.
        should_halt: Some violation is ``fatal`` or not recoverable.
    """

    violations: tuple[GuardrailViolation, ...] = ()

    @property
    def passed(self) -> bool:
        """True when nothing was found."""
        return not self.violations

    @property
    def should_halt(self) -> bool:
        """True when the output must be rejected without a retry."""
        return any(v.severity == "fatal" or not v.recoverable for v in self.violations)

    @property
    def should_retry(self) -> bool:
        """True when a retry may fix the output."""
        return not self.should_halt and any(v.severity == "error" for v in self.violations)


@dataclass(frozen=True, slots=True)
class GuardrailPreset:
    """A named list of rules (what ``Guardrails.recommended()`` and friends return).

    Iterable, so ``[*Guardrails.recommended(), my_rule]`` adds a rule to a preset.
    """

    name: str
    rules: tuple[GuardrailRule, ...] = ()

    def __iter__(self) -> Iterator[GuardrailRule]:
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)


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
            f"guardrail rule {name!r} (from {plugin!r}) rejected its options: {exc}"
        ) from exc
    if not isinstance(rule, GuardrailRule):
        raise L0PluginError(
            f"guardrail rule {name!r} (from plugin {plugin!r}) built {type(rule).__name__}; "
            "expected GuardrailRule"
        )
    return rule


def _build_preset(name: str, pm: L0PluginManager, where: str = "") -> GuardrailPreset:
    if name == "none":
        return GuardrailPreset("none", ())
    registry = _registry(pm)
    entry = registry.presets.get(name)
    if entry is None:
        raise _unknown("preset", name, registry, where)
    spec, plugin = entry
    if spec.factory is not None:
        rules = tuple(spec.factory())
        for rule in rules:
            if not isinstance(rule, GuardrailRule):
                raise L0PluginError(
                    f"guardrail preset {name!r} (from plugin {plugin!r}) built {rule!r}; "
                    "expected GuardrailRule items"
                )
    else:
        rules = tuple(_build_rule(r, {}, pm, f"preset {name!r}: ") for r in spec.rules)
    return GuardrailPreset(name, rules)


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


# --- the engine ------------------------------------------------------------------------------


def _as_dict(violation: GuardrailViolation) -> dict[str, Any]:
    return dataclasses.asdict(violation)


class GuardrailEngine:
    """A fixed set of rules, ready to check sessions (built by :func:`create_guardrail_engine`).

    Attributes:
        rules: The rules, in order.
        fast_limit: Characters of output up to which full-content checks run inline.
    """

    __slots__ = ("_overrides", "fast_limit", "rules")

    def __init__(
        self,
        rules: Iterable[GuardrailRule],
        *,
        fast_limit: int = DEFAULT_FAST_LIMIT,
        severity: Mapping[str, Severity] | None = None,
    ) -> None:
        items = tuple(rules)
        for rule in items:
            if not isinstance(rule, GuardrailRule):
                raise TypeError(f"guardrail rules must be GuardrailRule objects, got {rule!r}")
        overrides = dict(severity or {})
        for name, value in overrides.items():
            if value not in SEVERITIES:
                raise ValueError(
                    f"guardrail severity for {name!r} = {value!r} is not allowed; "
                    f"choose one of {', '.join(SEVERITIES)}"
                )
        # A severity override also rewrites violations that a check function built itself, so
        # config can lower any rule (``severity = {pattern = "warning"}``) without its code.
        self.rules = tuple(
            dataclasses.replace(r, severity=overrides[r.name]) if r.name in overrides else r
            for r in items
        )
        self._overrides = {r.name: overrides[r.name] for r in items if r.name in overrides}
        self.fast_limit = fast_limit

    def __repr__(self) -> str:
        return f"GuardrailEngine(rules={[r.name for r in self.rules]})"

    def with_rules(self, *extra: GuardrailRule) -> GuardrailEngine:
        """A new engine with ``extra`` rules appended, keeping limits and severity overrides."""
        return GuardrailEngine(
            [*self.rules, *extra], fast_limit=self.fast_limit, severity=self._overrides or None
        )

    def start(self, emit: Emit | None = None) -> GuardrailRun:
        """A run for one attempt; ``emit(kind, **fields)`` receives GUARDRAIL_* events."""
        return GuardrailRun(self, emit)

    def _stamp(self, violations: Sequence[GuardrailViolation]) -> list[GuardrailViolation]:
        overrides = self._overrides
        if not overrides:
            return list(violations)
        return [
            dataclasses.replace(v, severity=overrides[v.rule])
            if v.rule in overrides and v.severity != overrides[v.rule]
            else v
            for v in violations
        ]

    def check(self, context: GuardrailContext) -> GuardrailResult:
        """Check ``context`` from scratch: streaming rules always, the others if completed."""
        found: list[GuardrailViolation] = []
        text = context.content
        for rule in self.rules:
            if not (rule.streaming or context.completed):
                continue
            if rule.session is not None:
                session = rule.session(rule)
                if rule.streaming:
                    found.extend(session.feed(text, context.state) or ())
                if context.completed:
                    found.extend(session.finish(context) or ())
            elif rule.check is not None:
                found.extend(rule.check(context) or ())
        return GuardrailResult(tuple(self._stamp(found)))

    def validate(self, text: str) -> list[GuardrailViolation]:
        """Violations of the streaming rules in ``text`` (a checkpoint, not a finished answer)."""
        return list(self.check(GuardrailContext(text, delta=text)).violations)


def create_guardrail_engine(
    rules: Iterable[GuardrailRule],
    *,
    fast_limit: int = DEFAULT_FAST_LIMIT,
    severity: Mapping[str, Severity] | None = None,
) -> GuardrailEngine:
    """Build an engine for ``rules``; ``severity`` overrides severities by rule name."""
    return GuardrailEngine(rules, fast_limit=fast_limit, severity=severity)


class GuardrailRun:
    """The guardrail state of one attempt (see the module docstring for the protocol)."""

    __slots__ = (
        "_callback_ids",
        "_chars",
        "_emit",
        "_engine",
        "_error",
        "_full",
        "_late",
        "_loop",
        "_next_slow",
        "_pending",
        "_plain",
        "_plain_streaming",
        "_reported",
        "_sessions",
        "_started",
        "_stream_feeds",
        "feed",
    )

    def __init__(self, engine: GuardrailEngine, emit: Emit | None) -> None:
        self._engine = engine
        self._emit = emit
        sessions: list[tuple[int, GuardrailRule, RuleSession]] = []
        plain: list[tuple[int, GuardrailRule]] = []
        for index, rule in enumerate(engine.rules):
            if rule.session is not None:
                sessions.append((index, rule, rule.session(rule)))
            else:
                plain.append((index, rule))
        self._sessions = sessions
        self._stream_feeds = tuple(s.feed for _, r, s in sessions if r.streaming)
        self._plain = plain
        self._plain_streaming = tuple((i, r) for i, r in plain if r.streaming)
        self._full = [False] * len(engine.rules)
        self._next_slow = [0] * len(engine.rules)
        self._pending: dict[int, asyncio.Handle] = {}
        self._late: list[GuardrailViolation] = []
        self._error: BaseException | None = None
        self._reported: set[tuple[str, str, int | None]] = set()
        self._chars = 0
        self._started = False
        # Per attempt, so that callback ids repeat exactly across runs (deterministic replay).
        self._callback_ids = itertools.count(1)
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self.feed: Callable[[str, State], list[GuardrailViolation] | None] = (
            self._feed_observed if emit is not None else self._feed_fast
        )

    # --- streaming ---------------------------------------------------------------------------

    def _first(self, delta: str, state: State | None) -> str:
        # A continuation starts from a checkpoint: the rules must see it, or a JSON answer
        # resumed mid-object would look unbalanced.
        self._started = True
        prefix = state._prefix if state is not None else ""
        self._chars = len(prefix)
        return prefix + delta if prefix else delta

    def _feed_fast(self, delta: str, state: State) -> list[GuardrailViolation] | None:
        if not self._started:
            delta = self._first(delta, state)
        self._chars += len(delta)
        out: list[GuardrailViolation] | None = None
        for feed in self._stream_feeds:
            found = feed(delta, state)
            if found:
                if out is None:
                    out = []
                out.extend(found)
        for index, rule in self._plain_streaming:
            found = self._plain_check(index, rule, delta, state, completed=False)
            if found:
                if out is None:
                    out = []
                out.extend(found)
        if self._late or self._error is not None:
            out = self._take_late(out)
        if out:
            return self._engine._stamp(out)
        return None

    def _feed_observed(self, delta: str, state: State) -> list[GuardrailViolation] | None:
        if not self._started:
            delta = self._first(delta, state)
        self._chars += len(delta)
        checks: list[tuple[int, GuardrailRule, Callable[[], Violations]]] = []
        for index, rule, session in self._sessions:
            if rule.streaming:
                checks.append((index, rule, partial(session.feed, delta, state)))
        for index, rule in self._plain_streaming:
            call = partial(self._plain_check, index, rule, delta, state, False)
            checks.append((index, rule, call))
        return self._phase("stream", checks)

    def finish(self, state: State) -> list[GuardrailViolation] | None:
        """The stream completed: final checks of every rule, plus deferred results."""
        if not self._started:
            self._first("", state)
        for handle in self._pending.values():
            handle.cancel()
        self._pending.clear()
        context = GuardrailContext(None, delta="", completed=True, state=state)
        checks: list[tuple[int, GuardrailRule, Callable[[], Violations]]] = []
        for index, rule, session in self._sessions:
            checks.append((index, rule, partial(session.finish, context)))
        for index, rule in self._plain:
            checks.append((index, rule, partial(self._plain_final, index, rule, state)))
        if self._emit is not None:
            return self._phase("post", checks)
        out: list[GuardrailViolation] = []
        for _, _, call in checks:
            out.extend(call() or ())
        result = self._take_late(out)
        return self._engine._stamp(result) if result else None

    def _phase(
        self, phase: str, checks: list[tuple[int, GuardrailRule, Callable[[], Violations]]]
    ) -> list[GuardrailViolation] | None:
        emit = self._emit
        assert emit is not None
        stamp = self._engine._stamp
        started = _now()
        emit("GUARDRAIL_PHASE_START", phase=phase, rule_count=len(checks))
        out: list[GuardrailViolation] = []
        for index, rule, call in checks:
            began = _now()
            emit("GUARDRAIL_RULE_START", index=index, rule_id=rule.name, callback_id=None)
            found = stamp(call() or ())
            emit(
                "GUARDRAIL_RULE_RESULT",
                index=index,
                rule_id=rule.name,
                passed=not found,
                violation=_as_dict(found[0]) if found else None,
            )
            emit(
                "GUARDRAIL_RULE_END",
                index=index,
                rule_id=rule.name,
                passed=not found,
                callback_id=None,
                duration_ms=(_now() - began) * 1000,
            )
            out.extend(found)
        result = self._take_late(out)
        result = stamp(result) if result else []
        emit(
            "GUARDRAIL_PHASE_END",
            phase=phase,
            passed=not result,
            violations=[_as_dict(v) for v in result],
            duration_ms=(_now() - started) * 1000,
        )
        return result or None

    def _take_late(self, out: list[GuardrailViolation] | None) -> list[GuardrailViolation] | None:
        error = self._error
        if error is not None:
            self._error = None
            raise error
        if self._late:
            late = self._late
            self._late = []
            out = [*late, *(out or ())]
        return out

    # --- check functions: inline while cheap, deferred once they are not ----------------------

    def _fresh(self, found: Violations) -> list[GuardrailViolation]:
        """Drop violations this run reported already (a full-content check repeats itself)."""
        if not found:
            return []
        reported = self._reported
        out = []
        for v in found:
            key = (v.rule, v.message, v.position)
            if key not in reported:
                reported.add(key)
                out.append(v)
        return out

    def _plain_check(
        self, index: int, rule: GuardrailRule, delta: str, state: State, completed: bool
    ) -> list[GuardrailViolation]:
        assert rule.check is not None
        chars = self._chars
        if not self._full[index] or chars < self._engine.fast_limit or self._loop is None:
            context = GuardrailContext(None, delta=delta, completed=completed, state=state)
            found = rule.check(context)
            if context._used:
                self._full[index] = True
            return self._fresh(found)
        if chars >= self._next_slow[index] and index not in self._pending:
            # Snapshots grow by half each time, so all deferred checks of a long answer cost
            # O(n) together instead of O(n) each.
            self._next_slow[index] = chars + max(chars // 2, self._engine.fast_limit)
            context = GuardrailContext(
                state.content, delta=delta, token_count=state.token_count, state=None
            )
            self._pending[index] = self._loop.call_soon(self._deferred, index, rule, context)
        return []

    def _deferred(self, index: int, rule: GuardrailRule, context: GuardrailContext) -> None:
        self._pending.pop(index, None)
        emit = self._emit
        callback_id = f"{rule.name}-{next(self._callback_ids)}"
        if emit is not None:
            emit(
                "GUARDRAIL_CALLBACK_START", callback_id=callback_id, index=index, rule_id=rule.name
            )
        began = _now()
        error: BaseException | None = None
        assert rule.check is not None
        try:
            self._late.extend(self._fresh(rule.check(context)))
        except Exception as exc:
            # Re-raised at the next check: a guardrail that fails must not pass silently.
            error = exc
            self._error = exc
        if emit is not None:
            emit(
                "GUARDRAIL_CALLBACK_END",
                callback_id=callback_id,
                index=index,
                rule_id=rule.name,
                duration_ms=(_now() - began) * 1000,
                success=error is None,
                error=None if error is None else repr(error),
            )

    def _plain_final(
        self, index: int, rule: GuardrailRule, state: State
    ) -> list[GuardrailViolation]:
        assert rule.check is not None
        context = GuardrailContext(None, delta="", completed=True, state=state)
        return self._fresh(rule.check(context))


# --- one-shot checks -------------------------------------------------------------------------


def run_async_guardrail_check(
    engine: GuardrailEngine,
    context: GuardrailContext,
    on_result: Callable[[GuardrailResult], Any],
) -> GuardrailResult | None:
    """Check ``context`` without blocking the caller for long.

    Fast path: when the content is shorter than ``engine.fast_limit``, or a check of the delta
    alone already finds a violation, the result is returned at once (and ``on_result`` is not
    called). Otherwise the full check is scheduled with ``loop.call_soon`` and ``None`` is
    returned; ``on_result`` receives the result later. Without a running loop the full check
    runs at once and is returned.
    """
    content = context.content
    if len(content) < engine.fast_limit:
        return engine.check(context)
    delta = context.delta
    if delta and len(delta) < 1024:
        quick = engine.check(
            GuardrailContext(delta, delta=delta, completed=False, state=context.state)
        )
        if not quick.passed:
            return quick
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return engine.check(context)

    def deferred() -> None:
        try:
            result = engine.check(context)
        except Exception:
            log.exception("l0: a deferred guardrail check raised")
            return
        try:
            on_result(result)
        except Exception:
            log.exception("l0: on_result of a guardrail check raised")

    loop.call_soon(deferred)
    return None


async def run_guardrail_check_async(
    engine: GuardrailEngine, context: GuardrailContext
) -> GuardrailResult:
    """Check ``context``; long contents are checked in a worker thread, off the event loop."""
    if len(context.content) < engine.fast_limit:
        return engine.check(context)
    return await asyncio.to_thread(engine.check, context)


# --- resolution from l0.run arguments and config ---------------------------------------------


def _plugin_rules(pm: L0PluginManager) -> list[GuardrailRule]:
    """``l0_guardrail_check`` implementations as check rules, resolved once per engine."""
    rules = []
    for impl in pm.hook.l0_guardrail_check.get_hookimpls():
        function = impl.function

        def check(context: GuardrailContext, _fn: Callable[..., Any] = function) -> Violations:
            found: Violations = _fn(context)
            return found

        rules.append(GuardrailRule(f"plugin:{impl.plugin_name}", check=check, streaming=True))
    return rules


def _collect(value: Any, pm: L0PluginManager, out: list[GuardrailRule]) -> None:
    if isinstance(value, GuardrailRule):
        out.append(value)
    elif isinstance(value, GuardrailPreset):
        out.extend(value.rules)
    elif isinstance(value, str):
        registry = _registry(pm)
        if value in registry.presets or value == "none":
            out.extend(_build_preset(value, pm).rules)
        elif value in registry.rules:
            out.append(_build_rule(value, {}, pm))
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
                _collect(item, pm, out)
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
    if value is None:
        preset = settings.get("guardrails", "preset")
        if preset is not None:
            source = settings.sources.get("guardrails.preset", "config")
            where = f"{source}: guardrails.preset = {preset!r}: "
            rules.extend(_build_preset(preset, pm, where).rules)
        for name in settings.get("guardrails", "rules", []) or []:
            where = f"{settings.sources.get('guardrails.rules', 'config')}: guardrails.rules: "
            rules.append(_build_rule(name, {}, pm, where))
    else:
        _collect(value, pm, rules)
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
