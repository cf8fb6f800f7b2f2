"""Span events of one attempt: its child span, retries, fallbacks, timeouts, violations.

The per-session record (:class:`_Session`) and the handlers of the events that happen inside
a session, as a mixin of :class:`l0_otel.exporter.OTelExporter`, which binds them into its
handler table once per exporter (nothing here is looked up per event).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from l0.events import ObservabilityEvent, ObservabilityEventType
from l0_otel import semconv as sc
from l0_otel.content import error_type_of, text_of
from l0_otel.metrics import Instruments, base_attributes, bounded
from l0_otel.settings import OTelSettings

_T = ObservabilityEventType
_GENERIC_ADAPTERS = frozenset({"iter"})


def _ns(event: ObservabilityEvent) -> int:
    return int(event.ts * 1_000_000)


class _Session:
    """One session (or group) being exported: its spans and what its summary needs."""

    __slots__ = (
        "attempt",
        "attempt_span",
        "attrs",
        "fallback_index",
        "messages",
        "models",
        "ready_ts",
        "reasons",
        "rules",
        "settings",
        "span",
    )

    def __init__(self, span: Span, attrs: dict[str, Any], settings: OTelSettings) -> None:
        self.span = span
        self.attrs = attrs
        self.settings = settings
        self.attempt_span: Span | None = None
        self.attempt = 0
        self.fallback_index = 0
        self.models: list[str] = []
        self.messages: Any = None
        self.ready_ts: float | None = None
        self.reasons: list[str] = []
        self.rules: list[str] = []

    def target(self) -> Span:
        return self.attempt_span if self.attempt_span is not None else self.span


class _AttemptEvents:
    """Handlers of the events inside a session, each ``(session, event) -> None``."""

    if TYPE_CHECKING:
        _tracer: trace.Tracer

        @property
        def instruments(self) -> Instruments: ...

    def _close_attempt(self, session: _Session, event: ObservabilityEvent, outcome: str) -> None:
        span = session.attempt_span
        if span is None:
            return
        span.set_attribute(sc.L0_ATTEMPT_OUTCOME, outcome)
        if outcome not in (sc.OUTCOME_SUCCESS, sc.OUTCOME_ABORTED):
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=_ns(event))
        session.attempt_span = None

    def _stream_init(self, session: _Session, event: ObservabilityEvent) -> None:
        self._close_attempt(session, event, "superseded")
        session.attempt = int(event.get("attempt", session.attempt + 1))
        index = int(event.get("fallback_index", session.fallback_index))
        session.fallback_index = index
        attrs: dict[str, Any] = {
            sc.L0_ATTEMPT: session.attempt,
            sc.L0_FALLBACK_INDEX: index,
            sc.GEN_AI_OPERATION_NAME: session.attrs[sc.GEN_AI_OPERATION_NAME],
        }
        if index < len(session.models):
            attrs[sc.GEN_AI_REQUEST_MODEL] = session.models[index]
        session.attempt_span = self._tracer.start_span(
            sc.ATTEMPT_SPAN,
            context=trace.set_span_in_context(session.span),
            kind=SpanKind.INTERNAL,
            attributes=attrs,
            start_time=_ns(event),
        )

    def _adapter(self, session: _Session, event: ObservabilityEvent) -> None:
        adapter = event.get("adapter_id")
        if sc.GEN_AI_PROVIDER_NAME not in session.attrs and adapter not in _GENERIC_ADAPTERS:
            session.attrs[sc.GEN_AI_PROVIDER_NAME] = str(adapter)
            session.span.set_attribute(sc.GEN_AI_PROVIDER_NAME, str(adapter))

    def _ready(self, session: _Session, event: ObservabilityEvent) -> None:
        session.ready_ts = event.ts
        ttft = event.get("ttft_ms")
        if session.attempt_span is not None and ttft is not None:
            session.attempt_span.set_attribute(sc.L0_TTFT_MS, float(ttft))
        if ttft is not None and session.settings.metrics:
            self.instruments.ttft.record(float(ttft) / 1000, self._metric_attrs(session))

    def _timeout(self, session: _Session, event: ObservabilityEvent) -> None:
        session.target().add_event(
            sc.EVENT_TIMEOUT,
            {
                sc.L0_TIMEOUT_TYPE: str(event.get("timeout_type")),
                sc.L0_TIMEOUT_ELAPSED_MS: int(event.get("elapsed_ms") or 0),
                sc.L0_TIMEOUT_CONFIGURED_MS: int(event.get("configured_ms") or 0),
            },
            timestamp=_ns(event),
        )

    def _network_error(self, session: _Session, event: ObservabilityEvent) -> None:
        kind = error_type_of(event.get("error"))
        session.target().add_event(
            sc.EVENT_NETWORK_ERROR,
            {sc.ERROR_TYPE: kind, sc.L0_ERROR_CATEGORY: "network"},
            timestamp=_ns(event),
        )

    def _failed(self, session: _Session, event: ObservabilityEvent) -> None:
        """The attempt failed: its error type, the rules it tripped, the zero-output count."""
        self._attempt_violations(session, event)
        kind = str(event.get("error_type") or "")
        if not kind:
            return
        short = kind.rsplit(".", 1)[-1]
        if session.attempt_span is not None:
            session.attempt_span.set_attribute(sc.ERROR_TYPE, short)
        if short == "ZeroOutputError":
            session.span.set_attribute(sc.L0_ZERO_OUTPUT, True)
            if session.settings.metrics:
                self.instruments.zero_output.add(1, self._metric_attrs(session))

    def _retry(self, session: _Session, event: ObservabilityEvent) -> None:
        reason = bounded(event.get("reason"))
        self._failed(session, event)
        if session.attempt_span is not None:
            session.attempt_span.set_attribute(sc.L0_RETRY_REASON, reason)
        self._close_attempt(session, event, "retry")
        session.reasons.append(reason)
        session.span.add_event(
            sc.EVENT_RETRY,
            {
                sc.L0_ATTEMPT: int(event.get("attempt") or 0),
                sc.L0_RETRY_REASON: reason,
                sc.L0_RETRY_DELAY_MS: float(event.get("delay_ms") or 0.0),
                sc.L0_RETRY_COUNTS_TOWARD_LIMIT: bool(event.get("counts_toward_limit")),
            },
            timestamp=_ns(event),
        )
        if session.settings.metrics:
            attrs = self._metric_attrs(session)
            attrs[sc.L0_RETRY_REASON] = reason
            self.instruments.retries.add(1, attrs)

    def _fallback(self, session: _Session, event: ObservabilityEvent) -> None:
        reason = bounded(event.get("reason"))
        self._failed(session, event)
        if session.attempt_span is not None:
            session.attempt_span.set_attribute(sc.L0_FALLBACK_REASON, reason)
        self._close_attempt(session, event, "fallback")
        session.span.add_event(
            sc.EVENT_FALLBACK,
            {
                sc.L0_FALLBACK_FROM: int(event.get("from_index") or 0),
                sc.L0_FALLBACK_INDEX: int(event.get("to_index") or 0),
                sc.L0_FALLBACK_REASON: reason,
            },
            timestamp=_ns(event),
        )
        if session.settings.metrics:
            attrs = self._metric_attrs(session)
            attrs[sc.L0_FALLBACK_REASON] = reason
            self.instruments.fallbacks.add(1, attrs)

    def _fallback_selected(self, session: _Session, event: ObservabilityEvent) -> None:
        session.fallback_index = int(event.get("index") or 0)

    def _attempt_violations(self, session: _Session, event: ObservabilityEvent) -> None:
        # The failure event names the rules that ended the attempt: no per-check events needed.
        span = session.attempt_span
        violations = event.get("violations")
        if span is None or not violations:
            return
        rules: list[str] = []
        for violation in violations:
            rule = str(violation.get("rule"))
            rules.append(rule)
            span.add_event(
                sc.EVENT_VIOLATION,
                {
                    sc.L0_GUARDRAIL_RULE: rule,
                    sc.L0_GUARDRAIL_SEVERITY: str(violation.get("severity")),
                },
                timestamp=_ns(event),
            )
        span.set_attribute(sc.L0_GUARDRAIL_RULES, list(dict.fromkeys(rules)))

    def _violations(self, session: _Session, event: ObservabilityEvent) -> None:
        # From the summary, once per session: listening to GUARDRAIL_* events would make the
        # session build several events per rule at every check (see ``l0_event_types``).
        rules = [str(r) for r in event.get("violated_rules") or ()]
        for rule in rules:
            session.span.add_event(
                sc.EVENT_VIOLATION, {sc.L0_GUARDRAIL_RULE: rule}, timestamp=_ns(event)
            )
            if rule not in session.rules:
                session.rules.append(rule)
            if session.settings.metrics:
                labels = base_attributes(session.attrs)
                labels[sc.L0_GUARDRAIL_RULE] = bounded(rule)
                self.instruments.violations.add(1, labels)

    def _drift(self, session: _Session, event: ObservabilityEvent) -> None:
        if not event.get("detected"):
            return
        session.target().add_event(
            sc.EVENT_DRIFT,
            {
                sc.L0_DRIFT_SCORE: float(event.get("score") or 0.0),
                sc.L0_DRIFT_THRESHOLD: float(event.get("threshold") or 0.0),
            },
            timestamp=_ns(event),
        )

    def _checkpoint(self, session: _Session, event: ObservabilityEvent) -> None:
        attrs: dict[str, Any] = {sc.L0_CHECKPOINT_TOKENS: int(event.get("token_count") or 0)}
        if session.settings.capture_content:
            attrs[sc.L0_CHECKPOINT_TEXT] = str(event.get("checkpoint") or "")
        session.target().add_event(sc.EVENT_CHECKPOINT, attrs, timestamp=_ns(event))

    def _resume(self, session: _Session, event: ObservabilityEvent) -> None:
        attrs: dict[str, Any] = {sc.L0_CHECKPOINT_TOKENS: int(event.get("token_count") or 0)}
        if session.settings.capture_content:
            attrs[sc.L0_CHECKPOINT_TEXT] = str(event.get("checkpoint") or "")
        session.span.add_event(sc.EVENT_RESUME, attrs, timestamp=_ns(event))

    def _tool_requested(self, session: _Session, event: ObservabilityEvent) -> None:
        attrs: dict[str, Any] = {
            sc.GEN_AI_TOOL_NAME: str(event.get("tool_name")),
            sc.GEN_AI_TOOL_CALL_ID: str(event.get("tool_call_id")),
        }
        if session.settings.capture_content:
            attrs[sc.GEN_AI_TOOL_CALL_ARGUMENTS] = text_of(event.get("arguments"))
        session.target().add_event(sc.EVENT_TOOL_CALL, attrs, timestamp=_ns(event))

    def _abort(self, session: _Session, event: ObservabilityEvent) -> None:
        session.span.add_event(
            sc.EVENT_ABORT, {sc.L0_ABORT_SOURCE: str(event.get("source"))}, timestamp=_ns(event)
        )

    def _give_up(self, session: _Session, event: ObservabilityEvent) -> None:
        self._failed(session, event)
        self._close_attempt(session, event, "give_up")
        kind = str(event.get("error_type") or error_type_of(event.get("last_error")))
        short = kind.rsplit(".", 1)[-1]
        message = str(event.get("error_message") or event.get("last_error") or "")
        span = session.span
        span.set_attribute(sc.ERROR_TYPE, short)
        session.attrs[sc.ERROR_TYPE] = short
        span.set_attribute(sc.L0_ERROR_CATEGORY, str(event.get("category")))
        span.add_event(
            "exception",
            {
                "exception.type": kind,
                "exception.message": message,
                "exception.escaped": True,
                sc.L0_RETRY_REASON: str(event.get("reason") or ""),
            },
            timestamp=_ns(event),
        )
        span.set_status(Status(StatusCode.ERROR, f"{short}: {event.get('reason')}"))

    def _metric_attrs(self, session: _Session) -> dict[str, Any]:
        attrs = base_attributes(session.attrs)
        if session.fallback_index < len(session.models):
            attrs[sc.GEN_AI_REQUEST_MODEL] = session.models[session.fallback_index]
        return attrs
