"""L0 observability events to OpenTelemetry spans, span events and metrics.

One span per session (``chat gpt-4o``, kind CLIENT) whose parent is the caller's current span
(or the span of the enclosing L0 session or group, by ``parent_id``); one child span per
attempt; retries, fallbacks, timeouts, violations, drift, checkpoints, resumes and tool calls
as span events; ``execute_tool <name>`` child spans for tools the application runs. Nothing
here runs per token: the runtime calls :meth:`OTelExporter.export` once per observability
event.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from l0.events import REQUEST_META_KEY, ObservabilityEvent, ObservabilityEventType
from l0_otel import semconv as sc
from l0_otel._attempts import _AttemptEvents, _ns, _Session
from l0_otel.content import error_type_of, input_messages, output_messages, text_of
from l0_otel.metrics import Instruments
from l0_otel.settings import OTelSettings, read_settings

__all__ = ["OTelExporter"]

_T = ObservabilityEventType
_MAX_OPEN = 10_000
"""Sessions tracked at once; past this the oldest is dropped (a session that never ended)."""
_MAX_ENDED = 1_024
"""Ended sessions whose span still parents late tool spans (tools run after the stream)."""


try:  # the API's placeholder until an SDK is set; not exported, so looked up defensively
    from opentelemetry.metrics._internal import _ProxyMeterProvider as _PlaceholderMeters
except ImportError:  # pragma: no cover - another API version: every provider counts as set
    _PlaceholderMeters = metrics.NoOpMeterProvider  # type: ignore[assignment,misc]
# Exact types (no ABC instance checks, this runs per session); a subclass counts as set up.
_PLACEHOLDERS = frozenset(
    {
        trace.ProxyTracerProvider,
        trace.NoOpTracerProvider,
        _PlaceholderMeters,
        metrics.NoOpMeterProvider,
    }
)
_UNKNOWN: Any = object()


def _public_probe() -> bool:
    return not (
        type(trace.get_tracer_provider()) in _PLACEHOLDERS
        and type(metrics.get_meter_provider()) in _PLACEHOLDERS
    )


def _provider_probe(module: Any, attribute: str, variable: str) -> Callable[[], bool | None]:
    """Whether one global provider is set up, as its public getter would answer.

    The getters test ``variable in os.environ`` while no provider is set (an SDK may be named
    there), which through ``os.environ`` costs a raised ``KeyError``: together about 5 µs per
    session here. This reads the API's global and the raw environment instead; ``None``
    when either is not what it was written against (the caller then asks the getters).
    """
    environ = getattr(os.environ, "_data", None)
    encode = getattr(os.environ, "encodekey", None)
    if not isinstance(environ, dict) or encode is None or not hasattr(module, attribute):
        return lambda: None
    key = encode(variable)

    def probe() -> bool | None:
        provider = getattr(module, attribute, _UNKNOWN)
        if provider is None:
            # Unset, unless the environment names one: the getter then loads it (once).
            return None if key in environ else False
        if provider is _UNKNOWN:
            return None
        return type(provider) not in _PLACEHOLDERS

    return probe


def _backend_probe() -> Callable[[], bool]:
    """``() -> bool``: whether either global provider is set up (is not a placeholder)."""
    tracing = _provider_probe(trace, "_TRACER_PROVIDER", "OTEL_PYTHON_TRACER_PROVIDER")
    try:
        from opentelemetry.metrics import _internal as metrics_internal
    except ImportError:  # pragma: no cover - another API layout
        return _public_probe
    metering = _provider_probe(metrics_internal, "_METER_PROVIDER", "OTEL_PYTHON_METER_PROVIDER")

    def probe() -> bool:
        traced = tracing()
        if traced:
            return True
        metered = metering()
        if metered:
            return True
        if traced is None or metered is None:
            return _public_probe()
        return False

    return probe


_backend_set_up = _backend_probe()


class OTelExporter(_AttemptEvents):
    """Turns L0 observability events into spans and metrics on the global OTel providers.

    Args:
        settings: Fixed settings; ``None`` reads ``[tool.l0.otel]`` / ``L0_OTEL_*`` at the
            start of every session.
        tracer_provider: A tracer provider to use instead of the global one.
        meter_provider: A meter provider to use instead of the global one.
    """

    def __init__(
        self,
        settings: OTelSettings | None = None,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        from l0_otel import __version__

        self._fixed = settings
        self._version = __version__
        self._meter_provider = meter_provider
        # Providers handed in are taken as set up; the global ones are looked at per session.
        self._explicit = tracer_provider is not None or meter_provider is not None
        self._tracer = trace.get_tracer(
            sc.INSTRUMENTATION_NAME, __version__, tracer_provider=tracer_provider
        )
        self._instruments: Instruments | None = None
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self._ended: OrderedDict[str, _Session] = OrderedDict()
        self._tools: dict[tuple[str, str], Span] = {}
        self._handlers: dict[ObservabilityEventType, Callable[[_Session, ObservabilityEvent], None]]
        self._handlers = {
            _T.STREAM_INIT: self._stream_init,
            _T.ADAPTER_DETECTED: self._adapter,
            _T.STREAM_READY: self._ready,
            _T.TIMEOUT_TRIGGERED: self._timeout,
            _T.NETWORK_ERROR: self._network_error,
            _T.RETRY_ATTEMPT: self._retry,
            _T.FALLBACK_START: self._fallback,
            _T.FALLBACK_MODEL_SELECTED: self._fallback_selected,
            _T.DRIFT_CHECK_RESULT: self._drift,
            _T.CHECKPOINT_SAVED: self._checkpoint,
            _T.RESUME_START: self._resume,
            _T.TOOL_REQUESTED: self._tool_requested,
            _T.ABORT_REQUESTED: self._abort,
            _T.RETRY_GIVE_UP: self._give_up,
            _T.SESSION_SUMMARY: self._summary,
            _T.SESSION_END: self._end,
            _T.GROUP_WINNER: self._group_event,
            _T.GROUP_TASK_FAILED: self._group_event,
            _T.GROUP_TASK_CANCELLED: self._group_event,
            _T.CONSENSUS_REACHED: self._group_event,
            _T.CONSENSUS_FAILED: self._group_event,
            _T.GROUP_END: self._group_end,
            # Provider health (docs/health.md): span events on the session's span.
            _T.CIRCUIT_OPENED: self._health_event,
            _T.CIRCUIT_HALF_OPEN: self._health_event,
            _T.CIRCUIT_CLOSED: self._health_event,
            _T.CIRCUIT_REJECTED: self._health_event,
            _T.RETRY_AFTER_HELD: self._health_event,
            _T.RETRY_BUDGET_REFUSED: self._health_event,
        }

    @property
    def event_types(self) -> frozenset[str]:
        """The observability event types the installed plugin subscribes to (``l0_event_types``).

        Per-check events (guardrail rules, drift checks, checkpoints) are left out: the session
        would build them every few tokens, and the summary carries what the spans need (rules
        violated, drift detected, checkpoints made). An exporter used directly still handles
        ``DRIFT_CHECK_RESULT`` and ``CHECKPOINT_SAVED`` when it is given them.
        """
        tools = (_T.TOOL_START, _T.TOOL_RESULT, _T.TOOL_ERROR, _T.TOOL_COMPLETED)
        per_check = (_T.DRIFT_CHECK_RESULT, _T.CHECKPOINT_SAVED)
        starts = (_T.SESSION_START, _T.GROUP_START)
        kinds = (*starts, *tools, *(t for t in self._handlers if t not in per_check))
        return frozenset(str(t) for t in kinds)

    def active(self) -> bool:
        """Whether a session starting now should feed this exporter (``l0_active``).

        False while the global tracer and meter providers are both OpenTelemetry's
        placeholders (no SDK set up: every span and metric would be dropped) or export is
        disabled. Asked per session (two lookups), so a provider set later is picked up by
        the next session.
        """
        if not self._explicit and not _backend_set_up():
            return False
        settings = self._fixed if self._fixed is not None else read_settings()
        return settings.enabled

    def wants_content(self) -> bool:
        """Whether sessions should hand over prompt and completion text (``l0_wants_content``).

        Asked once per session: true when ``capture_content`` is on (and export is enabled).
        """
        settings = self._fixed if self._fixed is not None else read_settings()
        return settings.enabled and settings.capture_content

    @property
    def instruments(self) -> Instruments:
        """The metric instruments (created on first use)."""
        if self._instruments is None:
            self._instruments = Instruments(self._version, self._meter_provider)
        return self._instruments

    def export(self, event: ObservabilityEvent) -> None:
        """Handle one observability event (the ``l0_export_event`` hook)."""
        kind = event.type
        if kind is _T.SESSION_START:
            if event.stream_id not in self._sessions:
                self._start(event)
            return
        if kind is _T.GROUP_START:
            if event.stream_id not in self._sessions:
                self._group_start(event)
            return
        if kind in (_T.TOOL_START, _T.TOOL_RESULT, _T.TOOL_ERROR, _T.TOOL_COMPLETED):
            self._tool(event)
            return
        session = self._sessions.get(event.stream_id)
        if session is None:
            return
        handler = self._handlers.get(kind)
        if handler is not None:
            handler(session, event)

    # --- session ---------------------------------------------------------------------------

    def _parent(self, event: ObservabilityEvent) -> Any:
        parent_id = getattr(event, "parent_id", None)
        if parent_id:
            parent = self._sessions.get(parent_id)
            if parent is None:
                parent = self._ended.get(parent_id)
            if parent is not None:
                return trace.set_span_in_context(parent.target())
        return None  # the caller's current context

    def _start(self, event: ObservabilityEvent) -> None:
        settings = self._fixed if self._fixed is not None else read_settings()
        if not settings.enabled:
            return
        request = event.meta.get(REQUEST_META_KEY)
        request = request if isinstance(request, Mapping) else {}
        operation = str(request.get("operation") or sc.OPERATION_CHAT)
        models = [str(m) for m in request.get("models") or () if m]
        attrs: dict[str, Any] = {sc.GEN_AI_OPERATION_NAME: operation}
        if request.get("provider"):
            attrs[sc.GEN_AI_PROVIDER_NAME] = str(request["provider"])
        if models:
            attrs[sc.GEN_AI_REQUEST_MODEL] = models[0]
        attrs[sc.L0_STREAM_ID] = event.stream_id
        if event.session_id != event.stream_id:
            attrs[sc.GEN_AI_CONVERSATION_ID] = event.session_id
        parent_id = getattr(event, "parent_id", None)
        if parent_id:
            attrs[sc.L0_PARENT_ID] = parent_id
        name = f"{operation} {models[0]}" if models else operation
        span = self._tracer.start_span(
            name,
            context=self._parent(event),
            kind=SpanKind.CLIENT,
            attributes=attrs,
            start_time=_ns(event),
        )
        session = _Session(span, attrs, settings)
        session.models = models
        if settings.capture_content:
            session.messages = request.get("messages")
        self._sessions[event.stream_id] = session
        if len(self._sessions) > _MAX_OPEN:
            _, dropped = self._sessions.popitem(last=False)
            dropped.span.end()

    def _group_start(self, event: ObservabilityEvent) -> None:
        settings = self._fixed if self._fixed is not None else read_settings()
        if not settings.enabled:
            return
        kind = str(event.get("kind") or "group")
        attrs: dict[str, Any] = {
            sc.L0_GROUP_KIND: kind,
            sc.L0_STREAM_ID: event.stream_id,
            sc.L0_GROUP_TASKS: int(event.get("task_count") or 0),
        }
        parent_id = getattr(event, "parent_id", None)
        if parent_id:
            attrs[sc.L0_PARENT_ID] = parent_id
        span = self._tracer.start_span(
            f"l0.{kind}",
            context=self._parent(event),
            kind=SpanKind.INTERNAL,
            attributes=attrs,
            start_time=_ns(event),
        )
        self._sessions[event.stream_id] = _Session(span, attrs, settings)

    def _group_event(self, session: _Session, event: ObservabilityEvent) -> None:
        attrs: dict[str, Any] = {}
        if event.get("index") is not None:
            attrs[sc.L0_GROUP_INDEX] = int(event.get("index"))
        if event.type is _T.GROUP_TASK_FAILED:
            attrs[sc.ERROR_TYPE] = error_type_of(event.get("error"))
        session.span.add_event(f"l0.{str(event.type.value).lower()}", attrs, timestamp=_ns(event))

    def _health_event(self, session: _Session, event: ObservabilityEvent) -> None:
        attrs: dict[str, Any] = {sc.L0_PROVIDER_KEY: str(event.get("key"))}
        if event.get("action") is not None:
            attrs[sc.L0_HEALTH_ACTION] = str(event.get("action"))
        session.span.add_event(f"l0.{str(event.type.value).lower()}", attrs, timestamp=_ns(event))

    def _group_end(self, session: _Session, event: ObservabilityEvent) -> None:
        status = str(event.get("status"))
        session.span.set_attribute(sc.L0_OUTCOME, status)
        if status == "failed":
            session.span.set_status(Status(StatusCode.ERROR))
        elif status == "success":
            session.span.set_status(Status(StatusCode.OK))
        self._end(session, event)

    def _summary(self, session: _Session, event: ObservabilityEvent) -> None:
        status = str(event.get("status"))
        retries = int(event.get("retry_count") or 0)
        depth = int(event.get("fallback_depth") or 0)
        if status == "success":
            outcome = sc.OUTCOME_RECOVERED if retries or depth else sc.OUTCOME_SUCCESS
        elif status == "aborted":
            outcome = sc.OUTCOME_ABORTED
        else:
            outcome = sc.OUTCOME_ERROR
        self._close_attempt(
            session, event, sc.OUTCOME_ABORTED if outcome == sc.OUTCOME_ABORTED else "success"
        )
        self._violations(session, event)
        span = session.span
        attrs: dict[str, Any] = {
            sc.L0_OUTCOME: outcome,
            sc.L0_ATTEMPTS: session.attempt,
            sc.L0_RETRY_COUNT: retries,
            sc.L0_FALLBACK_INDEX: depth,
            sc.L0_TOKEN_COUNT: int(event.get("token_count") or 0),
            sc.L0_CHECKPOINTS: int(event.get("checkpoints_created") or 0),
            sc.L0_DRIFT_DETECTED: bool(event.get("drift_detected")),
        }
        paid, kept = event.get("tokens_paid"), event.get("tokens_kept")
        if isinstance(paid, int) and isinstance(kept, int):
            attrs[sc.L0_TOKENS_PAID] = paid
            attrs[sc.L0_TOKENS_KEPT] = kept
            attrs[sc.L0_USAGE_ESTIMATED] = bool(event.get("usage_estimated"))
        if session.reasons:
            attrs[sc.L0_RETRY_REASONS] = list(session.reasons)
        if session.rules:
            attrs[sc.L0_GUARDRAIL_RULES] = list(session.rules)
        usage = event.get("usage")
        input_tokens = output_tokens = None
        if isinstance(usage, Mapping):
            input_tokens = usage.get("prompt_tokens", usage.get("input_tokens"))
            output_tokens = usage.get("completion_tokens", usage.get("output_tokens"))
            if isinstance(input_tokens, int):
                attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] = input_tokens
            if isinstance(output_tokens, int):
                attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] = output_tokens
        finish = event.get("finish_reason")
        if finish:
            attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] = [str(finish)]
        model = event.get("response_model")
        if model:
            attrs[sc.GEN_AI_RESPONSE_MODEL] = str(model)
            session.attrs[sc.GEN_AI_RESPONSE_MODEL] = str(model)
        if session.settings.capture_content:
            self._content(session, event, attrs)
        span.set_attributes(attrs)
        if outcome != sc.OUTCOME_ERROR:
            span.set_status(Status(StatusCode.OK))
        if session.settings.metrics:
            self._session_metrics(session, event, outcome, input_tokens, output_tokens)

    @staticmethod
    def _content(session: _Session, event: ObservabilityEvent, attrs: dict[str, Any]) -> None:
        """``gen_ai.input.messages`` / ``gen_ai.output.messages`` (opt-in: capture_content)."""
        if session.messages is not None:
            attrs[sc.GEN_AI_INPUT_MESSAGES] = text_of(input_messages(session.messages))
        output = event.get("output_text")
        if isinstance(output, str):
            attrs[sc.GEN_AI_OUTPUT_MESSAGES] = text_of(
                output_messages(output, event.get("finish_reason"))
            )

    def _session_metrics(
        self,
        session: _Session,
        event: ObservabilityEvent,
        outcome: str,
        input_tokens: Any,
        output_tokens: Any,
    ) -> None:
        end = event.get("end_ts")
        self.instruments.record_session(
            session.attrs,
            outcome,
            start_ms=event.get("start_ts"),
            end_ms=end if isinstance(end, int | float) else event.ts,
            ready_ms=session.ready_ts,
            tokens=int(event.get("token_count") or 0),
            input_tokens=input_tokens,
            output_tokens=output_tokens,
        )

    def _end(self, session: _Session, event: ObservabilityEvent) -> None:
        self._close_attempt(session, event, sc.OUTCOME_ABORTED)
        session.span.end(end_time=_ns(event))
        del self._sessions[event.stream_id]
        self._ended[event.stream_id] = session
        if len(self._ended) > _MAX_ENDED:
            self._ended.popitem(last=False)

    # --- tools the application runs (often after the stream ended) -------------------------

    def _tool(self, event: ObservabilityEvent) -> None:
        key = (event.stream_id, str(event.get("tool_call_id")))
        session = self._sessions.get(event.stream_id) or self._ended.get(event.stream_id)
        if session is None:
            return
        if event.type is _T.TOOL_START:
            parent = session.span
            name = str(event.get("tool_name"))
            self._tools[key] = self._tracer.start_span(
                f"{sc.OPERATION_EXECUTE_TOOL} {name}",
                context=trace.set_span_in_context(parent),
                kind=SpanKind.INTERNAL,
                attributes={
                    sc.GEN_AI_OPERATION_NAME: sc.OPERATION_EXECUTE_TOOL,
                    sc.GEN_AI_TOOL_NAME: name,
                    sc.GEN_AI_TOOL_CALL_ID: key[1],
                },
                start_time=_ns(event),
            )
            return
        span = self._tools.get(key)
        if span is None:
            return
        if event.type is _T.TOOL_RESULT and session.settings.capture_content:
            span.set_attribute(sc.GEN_AI_TOOL_CALL_RESULT, text_of(event.get("result")))
        elif event.type is _T.TOOL_ERROR:
            span.set_attribute(sc.ERROR_TYPE, error_type_of(event.get("error")))
            span.set_status(Status(StatusCode.ERROR))
        elif event.type is _T.TOOL_COMPLETED:
            span.end(end_time=_ns(event))
            del self._tools[key]
