"""The metric instruments of ``l0-otel``, created once from the global meter provider."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry import metrics

from l0_otel import semconv as sc

__all__ = ["Instruments", "bounded"]

_MAX_LABEL = 64


def bounded(value: Any) -> str:
    """A metric attribute value with bounded cardinality: the part before ``;``, cut short.

    Retry reasons may carry details (``"transient; Retry.max_retries=2 used up"``); only the
    leading kind is a label.
    """
    text = str(value).split(";", 1)[0].strip()
    return text[:_MAX_LABEL] or "unknown"


class Instruments:
    """One of each instrument, from ``metrics.get_meter`` (a no-op until an SDK is installed).

    Attributes on every instrument are low-cardinality: operation, provider, model names,
    outcome, reason, rule name, error type; never ids or text.
    """

    def __init__(self, version: str, provider: metrics.MeterProvider | None = None) -> None:
        meter = metrics.get_meter(sc.INSTRUMENTATION_NAME, version, meter_provider=provider)
        self.duration = meter.create_histogram(
            sc.METRIC_OPERATION_DURATION,
            unit="s",
            description="GenAI operation duration: a whole L0 session, retries included.",
            explicit_bucket_boundaries_advisory=sc.DURATION_BUCKETS,
        )
        self.tokens = meter.create_histogram(
            sc.METRIC_TOKEN_USAGE,
            unit="{token}",
            description="Input and output tokens per session, as the provider reported them.",
            explicit_bucket_boundaries_advisory=sc.TOKEN_BUCKETS,
        )
        self.ttft = meter.create_histogram(
            sc.METRIC_TIME_TO_FIRST_TOKEN,
            unit="s",
            description="Time from an attempt's request to its first token.",
            explicit_bucket_boundaries_advisory=sc.DURATION_BUCKETS,
        )
        self.gap = meter.create_histogram(
            sc.METRIC_INTER_TOKEN_GAP,
            unit="s",
            description="Mean time between tokens of a successful session's last attempt.",
            explicit_bucket_boundaries_advisory=sc.GAP_BUCKETS,
        )
        self.retries = meter.create_counter(
            sc.METRIC_RETRIES, unit="{retry}", description="Retries, by reason."
        )
        self.fallbacks = meter.create_counter(
            sc.METRIC_FALLBACKS, unit="{fallback}", description="Moves to a fallback stream."
        )
        self.violations = meter.create_counter(
            sc.METRIC_VIOLATIONS,
            unit="{violation}",
            description="Guardrail violations, by rule and severity.",
        )
        self.zero_output = meter.create_counter(
            sc.METRIC_ZERO_OUTPUT,
            unit="{attempt}",
            description="Attempts whose stream ended without any output.",
        )
        self.sessions = meter.create_counter(
            sc.METRIC_SESSIONS, unit="{session}", description="Finished sessions, by outcome."
        )

    def record_session(
        self,
        span_attrs: Mapping[str, Any],
        outcome: str,
        *,
        start_ms: Any,
        end_ms: float,
        ready_ms: float | None,
        tokens: int,
        input_tokens: Any,
        output_tokens: Any,
    ) -> None:
        """A finished session's duration, token usage, inter-token gap and outcome count."""
        # The session is one logical operation: labelled with the model it asked for first
        # (and the one that answered); per-attempt metrics carry each attempt's model.
        attrs = base_attributes(span_attrs)
        if sc.GEN_AI_RESPONSE_MODEL in span_attrs:
            attrs[sc.GEN_AI_RESPONSE_MODEL] = span_attrs[sc.GEN_AI_RESPONSE_MODEL]
        duration = attrs.copy()
        if sc.ERROR_TYPE in span_attrs:
            duration[sc.ERROR_TYPE] = span_attrs[sc.ERROR_TYPE]
        if isinstance(start_ms, int | float) and start_ms:
            self.duration.record(max(0.0, (end_ms - start_ms) / 1000), duration)
        if isinstance(input_tokens, int):
            self.tokens.record(input_tokens, {**attrs, sc.GEN_AI_TOKEN_TYPE: "input"})
        if isinstance(output_tokens, int):
            self.tokens.record(output_tokens, {**attrs, sc.GEN_AI_TOKEN_TYPE: "output"})
        if outcome in (sc.OUTCOME_SUCCESS, sc.OUTCOME_RECOVERED) and ready_ms and tokens > 1:
            self.gap.record(max(0.0, (end_ms - ready_ms) / 1000 / (tokens - 1)), attrs)
        self.sessions.add(1, {**base_attributes(span_attrs), sc.L0_OUTCOME: outcome})


def base_attributes(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The metric attributes shared by every instrument, from a session's span attributes."""
    return {
        key: attrs[key]
        for key in (sc.GEN_AI_OPERATION_NAME, sc.GEN_AI_PROVIDER_NAME, sc.GEN_AI_REQUEST_MODEL)
        if attrs.get(key) is not None
    }
