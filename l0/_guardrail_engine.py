"""The guardrail engine: a fixed set of rules, and the per-attempt run a session drives.

Split from :mod:`l0.guardrails` (whose docstring describes the protocol and the cost model),
which re-exports every public name here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any

from l0._guardrail_lazy import LazyFeeds
from l0._guardrail_types import (
    DEFAULT_FAST_LIMIT,
    SEVERITIES,
    Emit,
    GuardrailContext,
    GuardrailResult,
    GuardrailRule,
    RuleSession,
    Violations,
    check_failed,
    fill_violations,
)
from l0.types import GuardrailViolation, Severity, State

log = logging.getLogger("l0.guardrails")

_now = time.monotonic


# --- the engine ------------------------------------------------------------------------------


def _as_dict(violation: GuardrailViolation) -> dict[str, Any]:
    return {
        "rule": violation.rule,
        "message": violation.message,
        "severity": violation.severity,
        "recoverable": violation.recoverable,
        "position": violation.position,
    }


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
            try:
                if rule.session is not None:
                    session = rule.session(rule)
                    if rule.streaming:
                        found.extend(fill_violations(rule, session.feed(text, context.state) or ()))
                    if context.completed:
                        found.extend(fill_violations(rule, session.finish(context) or ()))
                elif rule.check is not None:
                    found.extend(fill_violations(rule, rule.check(context) or ()))
            except Exception as exc:
                raise check_failed(rule, exc) from exc
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


def _in_rule_order(hits: list[tuple[int, GuardrailRule, Violations]]) -> list[GuardrailViolation]:
    if len(hits) > 1:
        hits.sort(key=lambda hit: hit[0])
    out: list[GuardrailViolation] = []
    for _, rule, found in hits:
        out.extend(fill_violations(rule, found or ()))
    return out


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
        "_lazy",
        "_loop",
        "_next_slow",
        "_one",
        "_one_feed",
        "_pending",
        "_plain",
        "_plain_streaming",
        "_reported",
        "_sessions",
        "_started",
        "_stream_feeds",
        "feed",
        "streams",
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
        streaming = [(i, r, s) for i, r, s in sessions if r.streaming]
        # Unobserved runs hand text to sessions that say how much they need (``wants``) only
        # once that much is pending: a rule that batches its work costs nothing per check.
        # Observed runs feed every rule at every check, as their events report.
        lazy = [(i, r, s) for i, r, s in streaming if emit is None and hasattr(s, "wants")]
        self._lazy = LazyFeeds(lazy) if lazy else None
        self._stream_feeds = tuple(
            (i, r, s.feed) for i, r, s in streaming if emit is not None or not hasattr(s, "wants")
        )
        self._plain = plain
        self._plain_streaming = tuple((i, r) for i, r in plain if r.streaming)
        # Whether feeding it text while the answer streams can change anything: not for a run
        # of end-only rules (``zero_output``) nobody observes, whose session then skips checks.
        self.streams = bool(streaming or self._plain_streaming) or emit is not None
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
        if emit is None and not plain:
            # Only sessions (every standard rule): no check functions, so nothing is ever
            # deferred and the per-check feed skips their bookkeeping. One rule that reads every
            # check (``guardrails=[l0.json_rule()]``) is called straight, without a loop.
            if len(self._stream_feeds) == 1 and not lazy:
                self._one = self._stream_feeds[0]
                self._one_feed = self._one[2]
                self.feed = self._feed_one
            else:
                self.feed = self._feed_sessions

    # --- streaming ---------------------------------------------------------------------------

    def _first(self, delta: str, state: State | None) -> str:
        # A continuation starts from a checkpoint: the rules must see it, or a JSON answer
        # resumed mid-object would look unbalanced.
        self._started = True
        prefix = state._prefix if state is not None else ""
        # The caller counts what it feeds (prefix included) in _chars: not counted here too.
        self._chars = 0
        return prefix + delta if prefix else delta

    def _feed_fast(self, delta: str, state: State) -> list[GuardrailViolation] | None:
        if not self._started:
            delta = self._first(delta, state)
        chars = self._chars = self._chars + len(delta)
        out: list[GuardrailViolation] | None = None
        rule: GuardrailRule | None = None
        hits: list[tuple[int, GuardrailRule, Violations]] | None = None
        try:
            for index, rule, feed in self._stream_feeds:
                found = feed(delta, state)
                if found:
                    if hits is None:
                        hits = []
                    hits.append((index, rule, found))
            lazy = self._lazy
            if lazy is not None:
                # Per check: one append and one comparison, whatever the number of such rules.
                lazy.deltas.append(delta)
                if chars >= lazy.due:
                    hits = lazy.feed(chars, state, hits)
            if hits is not None:
                out = _in_rule_order(hits)
            for index, rule in self._plain_streaming:
                found = self._plain_check(index, rule, delta, state, completed=False)
                if found:
                    if out is None:
                        out = []
                    out.extend(found)
        except Exception as exc:
            # A bug in a rule is not a model failure: raised at once, never retried (#8 item 7).
            raise check_failed(rule, exc) from exc
        if self._late or self._error is not None:
            out = self._take_late(out)
        if out:
            return self._engine._stamp(out)
        return None

    def _feed_sessions(self, delta: str, state: State) -> list[GuardrailViolation] | None:
        # _feed_fast without check functions (nothing late, nothing deferred).
        if not self._started:
            delta = self._first(delta, state)
        rule: GuardrailRule | None = None
        hits: list[tuple[int, GuardrailRule, Violations]] | None = None
        try:
            for index, rule, feed in self._stream_feeds:
                found = feed(delta, state)
                if found:
                    if hits is None:
                        hits = []
                    hits.append((index, rule, found))
            lazy = self._lazy
            if lazy is not None:
                lazy.deltas.append(delta)
                chars = self._chars = self._chars + len(delta)
                if chars >= lazy.due:
                    hits = lazy.feed(chars, state, hits)
        except Exception as exc:
            raise check_failed(rule, exc) from exc
        if hits is not None:
            return self._engine._stamp(_in_rule_order(hits))
        return None

    def _feed_one(self, delta: str, state: State) -> list[GuardrailViolation] | None:
        if not self._started:
            delta = self._first(delta, state)
        try:
            found = self._one_feed(delta, state)
        except Exception as exc:
            raise check_failed(self._one[1], exc) from exc
        if found:
            return self._engine._stamp(fill_violations(self._one[1], found))
        return None

    def _feed_observed(self, delta: str, state: State) -> list[GuardrailViolation] | None:
        if not self._started:
            delta = self._first(delta, state)
        self._chars += len(delta)
        checks: list[tuple[int, GuardrailRule, Callable[[], Violations]]] = []
        for index, rule, feed in self._stream_feeds:
            checks.append((index, rule, partial(feed, delta, state)))
        for index, rule in self._plain_streaming:
            call = partial(self._plain_check, index, rule, delta, state, False)
            checks.append((index, rule, call))
        return self._phase("stream", checks)

    def finish(self, state: State) -> list[GuardrailViolation] | None:
        """The stream completed: final checks of every rule, plus deferred results."""
        early: list[GuardrailViolation] = []
        if not self._started:
            if state._prefix:
                # Never fed (a continuation that added nothing): the kept text is the answer,
                # and the rules see it before their final checks.
                early = self.feed("", state) or []
            else:
                self._first("", state)
        for handle in self._pending.values():
            handle.cancel()
        self._pending.clear()
        held: list[GuardrailViolation] = []
        if self._lazy is not None:
            # Text held back from batching rules reaches them before their final check.
            hits = self._lazy.flush(state)
            if hits:
                held = _in_rule_order(hits)
        context = GuardrailContext(None, delta="", completed=True, state=state)
        checks: list[tuple[int, GuardrailRule, Callable[[], Violations]]] = []
        for index, rule, session in self._sessions:
            checks.append((index, rule, partial(session.finish, context)))
        for index, rule in self._plain:
            checks.append((index, rule, partial(self._plain_final, index, rule, state)))
        if self._emit is not None:
            final = self._phase("post", checks)
            return early + final if early and final else early or final
        out: list[GuardrailViolation] = early + held
        for _, rule, call in checks:
            try:
                found = call()
            except Exception as exc:
                raise check_failed(rule, exc) from exc
            if found:
                out.extend(fill_violations(rule, found))
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
            try:
                found = stamp(fill_violations(rule, call() or ()))
            except Exception as exc:
                raise check_failed(rule, exc) from exc
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
            return self._fresh(fill_violations(rule, found) if found else found)
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
            found = rule.check(context)
            self._late.extend(self._fresh(fill_violations(rule, found) if found else found))
        except Exception as exc:
            # Re-raised at the next check: a guardrail that fails must not pass silently.
            error = exc
            self._error = check_failed(rule, exc)
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
        found = rule.check(context)
        return self._fresh(fill_violations(rule, found) if found else found)


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
