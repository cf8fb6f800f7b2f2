"""The rule types of guardrails: what a check sees, what a rule is, what a check returns.

Split from :mod:`l0.guardrails`, which re-exports every public name here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeAlias

from l0.errors import GuardrailCheckError
from l0.types import GuardrailViolation, Severity, State

SEVERITIES: Final = ("warning", "error", "fatal")
DEFAULT_FAST_LIMIT: Final = 5120
"""Characters of output below which every rule runs inline at each check."""

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
    """Incremental per-attempt state of a rule (what ``GuardrailRule.session`` returns).

    A session may also have a ``wants`` attribute (or property): the number of new characters
    it needs before a feed can find anything. An unobserved run then holds text back from it
    and feeds it, joined, once that many characters are pending (and whatever is left before
    ``finish``), instead of calling it at every check. The standard markdown and pattern rules
    do this; a session without ``wants`` is fed at every check.
    """

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
        plugin: The plugin that offered the rule (set by the registry; ``None`` for a rule
            built in-process). Named when the rule's check raises.
    """

    name: str
    check: Callable[[GuardrailContext], Violations] | None = None
    streaming: bool = False
    severity: Severity = "error"
    recoverable: bool = True
    description: str = ""
    session: Callable[[GuardrailRule], RuleSession] | None = None
    plugin: str | None = None

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


def fill_violations(
    rule: GuardrailRule, found: Sequence[GuardrailViolation]
) -> Sequence[GuardrailViolation]:
    """``found`` with the rule's severity/recoverable wherever the check left them unset."""
    if rule.severity == "error" and rule.recoverable:
        return found  # the rule's values are the violation defaults: nothing to fill
    out = []
    for v in found:
        unset_severity, unset_recoverable = v._unset
        if (unset_severity and v.severity != rule.severity) or (
            unset_recoverable and v.recoverable != rule.recoverable
        ):
            out.append(
                GuardrailViolation(
                    v.rule,
                    v.message,
                    rule.severity if unset_severity else v.severity,
                    rule.recoverable if unset_recoverable else v.recoverable,
                    v.position,
                )
            )
        else:
            out.append(v)
    return out


def check_failed(rule: GuardrailRule | None, exc: BaseException) -> GuardrailCheckError:
    """The internal error for a rule whose check (or session) raised ``exc``."""
    if isinstance(exc, GuardrailCheckError):
        return exc
    name = rule.name if rule is not None else "?"
    plugin = rule.plugin if rule is not None else None
    where = f"guardrail rule {name!r}" + (f" (from plugin {plugin!r})" if plugin else "")
    return GuardrailCheckError(
        f"{where} raised {type(exc).__name__}: {exc}; this is a bug in the rule, not a model "
        "failure, so it is not retried",
        rule=name,
        plugin=plugin,
    )
