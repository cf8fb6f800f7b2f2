"""L0 observability events to Sentry: breadcrumbs, one event per give-up, a span per session.

A session that recovers leaves only breadcrumbs (they ride along with whatever the
application reports next); a session that gives up sends exactly one event, tagged with the
model, attempts, fallback index and error category. Nothing here runs per token.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import sentry_sdk
from sentry_sdk.utils import event_from_exception

from l0.events import REQUEST_META_KEY, ObservabilityEvent, ObservabilityEventType
from l0_sentry._events import EVENT_TYPES
from l0_sentry.settings import SentrySettings, read_settings

__all__ = ["SentryExporter"]

_T = ObservabilityEventType
_MAX_OPEN = 10_000
_OP = "gen_ai.chat"


def _error_type(text: Any) -> str:
    return str(text).split("(", 1)[0].strip().rsplit(".", 1)[-1][:64] or "Exception"


class _Session:
    __slots__ = (
        "attempt",
        "category",
        "fallback_index",
        "models",
        "provider",
        "reported",
        "settings",
        "span",
    )

    def __init__(self, settings: SentrySettings, models: list[str], provider: str | None) -> None:
        self.settings = settings
        self.models = models
        self.provider = provider
        self.span: Any = None
        self.attempt = 1
        self.fallback_index = 0
        self.category: str | None = None
        self.reported: list[str] = []
        """Rules already reported by a failed attempt (not repeated from the summary)."""

    @property
    def model(self) -> str | None:
        index = self.fallback_index
        return self.models[index] if index < len(self.models) else None


class SentryExporter:
    """Feeds L0 observability events to the current Sentry client and scope.

    Does nothing while Sentry is not initialised (``sentry_sdk.init``).

    Args:
        settings: Fixed settings; ``None`` reads ``[tool.l0.sentry]`` / ``L0_SENTRY_*`` at the
            start of every session.
    """

    event_types: frozenset[str] = EVENT_TYPES
    """The observability event types this exporter reads (see ``l0_event_types``)."""

    def __init__(self, settings: SentrySettings | None = None) -> None:
        self._fixed = settings
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self._groups: OrderedDict[str, Any] = OrderedDict()
        """Open group spans (race, parallel, pool, consensus) by group stream id."""

    def active(self) -> bool:
        """Whether a session starting now should feed this exporter (``l0_active``).

        False while Sentry is not initialised (the current client is not active) or the
        exporter is disabled; asked once per session, so a later ``sentry_sdk.init`` counts.
        """
        if not sentry_sdk.get_client().is_active():
            return False
        settings = self._fixed if self._fixed is not None else read_settings()
        return settings.enabled

    def export(self, event: ObservabilityEvent) -> None:
        """Handle one observability event (the ``l0_export_event`` hook)."""
        kind = event.type
        if kind is _T.SESSION_START:
            self._start(event)
            return
        if kind is _T.GROUP_START:
            self._group_start(event)
            return
        if kind is _T.GROUP_END:
            self._group_end(event)
            return
        session = self._sessions.get(event.stream_id)
        if session is None:
            return
        if kind is _T.STREAM_INIT:
            session.attempt = int(event.get("attempt") or session.attempt)
        elif kind is _T.FALLBACK_MODEL_SELECTED:
            session.fallback_index = int(event.get("index") or 0)
        elif kind is _T.ADAPTER_DETECTED and session.provider is None:
            adapter = event.get("adapter_id")
            session.provider = None if adapter == "iter" else str(adapter)
        elif kind is _T.RETRY_ATTEMPT:
            self._violations(session, event)
            self._crumb(
                session,
                event,
                f"retry: attempt {event.get('attempt')} ({event.get('reason')})",
                "warning",
                attempt=event.get("attempt"),
                reason=event.get("reason"),
                delay_ms=event.get("delay_ms"),
            )
        elif kind is _T.FALLBACK_START:
            self._violations(session, event)
            self._crumb(
                session,
                event,
                f"fallback: stream {event.get('from_index')} -> {event.get('to_index')}",
                "warning",
                from_index=event.get("from_index"),
                to_index=event.get("to_index"),
                reason=event.get("reason"),
            )
        elif kind is _T.TIMEOUT_TRIGGERED:
            self._crumb(
                session,
                event,
                f"timeout: {event.get('timeout_type')} after {event.get('elapsed_ms')} ms",
                "warning",
                timeout_type=event.get("timeout_type"),
                elapsed_ms=event.get("elapsed_ms"),
            )
        elif kind is _T.NETWORK_ERROR:
            self._crumb(
                session,
                event,
                f"network error: {_error_type(event.get('error'))}",
                "warning",
                will_retry=event.get("will_retry"),
            )
        elif kind is _T.RETRY_GIVE_UP:
            self._violations(session, event)
            self._give_up(session, event)
        elif kind is _T.SESSION_SUMMARY:
            self._summary(session, event)
        elif kind is _T.SESSION_END:
            self._end(session, event)

    def _start(self, event: ObservabilityEvent) -> None:
        if event.stream_id in self._sessions or not sentry_sdk.get_client().is_active():
            return
        settings = self._fixed if self._fixed is not None else read_settings()
        if not settings.enabled:
            return
        request = event.meta.get(REQUEST_META_KEY)
        request = request if isinstance(request, Mapping) else {}
        models = [str(m) for m in request.get("models") or () if m]
        provider = request.get("provider")
        session = _Session(settings, models, str(provider) if provider else None)
        if settings.spans:
            parent = self._parent_span(event)
            if parent is not None:
                name = f"chat {models[0]}" if models else "chat"
                session.span = parent.start_child(op=_OP, name=name)
                session.span.set_data("l0.stream_id", event.stream_id)
                if models:
                    session.span.set_data("gen_ai.request.model", models[0])
        self._sessions[event.stream_id] = session
        if len(self._sessions) > _MAX_OPEN:
            self._sessions.popitem(last=False)
        self._crumb(session, event, f"session start: {session.model or 'stream'}", "info")

    def _parent_span(self, event: ObservabilityEvent) -> Any:
        """The span of the enclosing L0 group (by ``parent_id``), else the current span."""
        parent_id = event.parent_id
        if parent_id:
            group = self._groups.get(parent_id)
            if group is not None:
                return group
        return sentry_sdk.get_current_span()

    def _group_start(self, event: ObservabilityEvent) -> None:
        if event.stream_id in self._groups or not sentry_sdk.get_client().is_active():
            return
        settings = self._fixed if self._fixed is not None else read_settings()
        if not (settings.enabled and settings.spans):
            return
        parent = self._parent_span(event)
        if parent is None:
            return
        kind = str(event.get("kind") or "group")
        span = parent.start_child(op=f"l0.{kind}", name=f"l0.{kind}")
        span.set_data("l0.stream_id", event.stream_id)
        span.set_data("l0.group.kind", kind)
        span.set_data("l0.group.tasks", event.get("task_count"))
        self._groups[event.stream_id] = span
        if len(self._groups) > _MAX_OPEN:
            _, dropped = self._groups.popitem(last=False)
            dropped.finish()

    def _group_end(self, event: ObservabilityEvent) -> None:
        span = self._groups.pop(event.stream_id, None)
        if span is None:
            return
        status = str(event.get("status"))
        span.set_data("l0.outcome", status)
        span.set_status({"success": "ok", "cancelled": "cancelled"}.get(status, "internal_error"))
        span.finish()

    def _violations(self, session: _Session, event: ObservabilityEvent) -> None:
        """Guardrail rules the failed attempt tripped, as breadcrumbs at the attempt's end."""
        for violation in event.get("violations") or ():
            rule = str(violation.get("rule"))
            session.reported.append(rule)
            self._crumb(
                session,
                event,
                f"guardrail violation: {rule}",
                "warning",
                rule=rule,
                severity=violation.get("severity"),
                attempt=session.attempt,
            )

    def _crumb(
        self, session: _Session, event: ObservabilityEvent, message: str, level: str, **data: Any
    ) -> None:
        if not session.settings.breadcrumbs:
            return
        data["stream_id"] = event.stream_id
        sentry_sdk.add_breadcrumb(
            category="l0", type="default", message=message, level=level, data=data
        )

    def _tags(self, session: _Session, event: ObservabilityEvent) -> dict[str, Any]:
        tags: dict[str, Any] = {
            "l0.attempts": session.attempt,
            "l0.fallback_index": session.fallback_index,
            "l0.error_category": str(event.get("category")),
        }
        if session.model:
            tags["gen_ai.request.model"] = session.model
        if session.provider:
            tags["gen_ai.provider.name"] = session.provider
        return tags

    def _give_up(self, session: _Session, event: ObservabilityEvent) -> None:
        session.category = str(event.get("category"))
        self._crumb(
            session, event, f"gave up: {event.get('reason')}", "error", category=session.category
        )
        if not session.settings.capture_errors:
            return
        context = {
            "stream_id": event.stream_id,
            "session_id": event.session_id,
            "model": session.model,
            "provider": session.provider,
            "attempts": int(event.get("attempts") or session.attempt),
            "fallback_index": session.fallback_index,
            "category": session.category,
            "reason": event.get("reason"),
        }
        payload: Any = {  # sentry_sdk.Event, a TypedDict
            "level": "error",
            "logger": "l0",
            "tags": self._tags(session, event),
            "contexts": {"l0": context},
        }
        error = event.get("exception")
        client = sentry_sdk.get_client()
        if isinstance(error, BaseException):
            # The error object itself: Sentry gets its stack trace and its cause chain.
            converted, hint = event_from_exception(
                error,
                client_options=client.options,
                mechanism={"type": "l0", "handled": False},
            )
            payload["exception"] = converted["exception"]
            sentry_sdk.capture_event(payload, hint=hint)
            return
        full = str(event.get("error_type") or _error_type(event.get("last_error")))
        module, _, short = full.rpartition(".")
        exception: dict[str, Any] = {
            "type": short,
            "value": str(event.get("error_message") or event.get("last_error") or ""),
            "mechanism": {"type": "l0", "handled": False},
        }
        if module:
            exception["module"] = module
        payload["exception"] = {"values": [exception]}
        sentry_sdk.capture_event(payload)

    def _summary(self, session: _Session, event: ObservabilityEvent) -> None:
        # Violations come from the summary: GUARDRAIL_* events cost several per rule and check.
        # Rules that did not fail an attempt (warnings) are reported once, from the summary.
        reported = set(session.reported)
        for rule in dict.fromkeys(str(r) for r in event.get("violated_rules") or ()):
            if rule not in reported:
                self._crumb(session, event, f"guardrail violation: {rule}", "warning", rule=rule)
        if event.get("drift_detected"):
            self._crumb(session, event, "drift detected", "warning")
        span = session.span
        if span is None:
            return
        for key in ("status", "token_count", "retry_count", "fallback_depth"):
            span.set_data(f"l0.{key}", event.get(key))
        usage = event.get("usage")
        if isinstance(usage, Mapping):
            for source, target in (
                ("prompt_tokens", "gen_ai.usage.input_tokens"),
                ("completion_tokens", "gen_ai.usage.output_tokens"),
            ):
                if isinstance(usage.get(source), int):
                    span.set_data(target, usage[source])

    def _end(self, session: _Session, event: ObservabilityEvent) -> None:
        del self._sessions[event.stream_id]
        status = str(event.get("status"))
        if status == "success":
            self._crumb(session, event, "session end: success", "info")
        span = session.span
        if span is not None:
            span.set_status({"success": "ok", "aborted": "cancelled"}.get(status, "internal_error"))
            span.finish()
