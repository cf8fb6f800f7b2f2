"""Every span, attribute, event and metric name ``l0-otel`` emits, spelled once.

GenAI names follow the OpenTelemetry semantic conventions for generative AI, version 1.37.0
(``gen_ai.provider.name``, ``gen_ai.usage.input_tokens`` …, status Development). L0's own
names live under ``l0.``; span event names under ``l0.`` too.
"""

from __future__ import annotations

from typing import Final

SEMCONV_VERSION: Final = "1.37.0"
"""The GenAI semantic conventions version these names follow."""

INSTRUMENTATION_NAME: Final = "l0_otel"
"""The tracer and meter name (the instrumentation scope)."""

# --- GenAI attributes (semantic conventions) -------------------------------------------------
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_TOKEN_TYPE: Final = "gen_ai.token.type"
GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"
GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ID: Final = "gen_ai.tool.call.id"
GEN_AI_TOOL_CALL_ARGUMENTS: Final = "gen_ai.tool.call.arguments"
GEN_AI_TOOL_CALL_RESULT: Final = "gen_ai.tool.call.result"
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
ERROR_TYPE: Final = "error.type"

OPERATION_CHAT: Final = "chat"
OPERATION_EXECUTE_TOOL: Final = "execute_tool"
TOKEN_TYPE_INPUT: Final = "input"
TOKEN_TYPE_OUTPUT: Final = "output"

# --- L0 attributes ---------------------------------------------------------------------------
L0_STREAM_ID: Final = "l0.stream_id"
L0_PARENT_ID: Final = "l0.parent_id"
L0_OUTCOME: Final = "l0.outcome"
"""Session outcome: ``success`` (first attempt), ``recovered`` (after retries or fallbacks),
``error`` (gave up), ``aborted``."""
L0_ATTEMPT: Final = "l0.attempt"
L0_ATTEMPTS: Final = "l0.attempts"
L0_ATTEMPT_OUTCOME: Final = "l0.attempt.outcome"
"""Attempt outcome: ``success``, ``retry``, ``fallback``, ``give_up``, ``aborted``."""
L0_RETRY_COUNT: Final = "l0.retry.count"
L0_RETRY_REASON: Final = "l0.retry.reason"
L0_RETRY_REASONS: Final = "l0.retry.reasons"
L0_RETRY_DELAY_MS: Final = "l0.retry.delay_ms"
L0_RETRY_COUNTS_TOWARD_LIMIT: Final = "l0.retry.counts_toward_limit"
L0_FALLBACK_INDEX: Final = "l0.fallback.index"
L0_FALLBACK_FROM: Final = "l0.fallback.from_index"
L0_FALLBACK_REASON: Final = "l0.fallback.reason"
L0_ERROR_CATEGORY: Final = "l0.error.category"
L0_TIMEOUT_TYPE: Final = "l0.timeout.type"
L0_TIMEOUT_ELAPSED_MS: Final = "l0.timeout.elapsed_ms"
L0_TIMEOUT_CONFIGURED_MS: Final = "l0.timeout.configured_ms"
L0_GUARDRAIL_RULE: Final = "l0.guardrail.rule"
L0_GUARDRAIL_RULES: Final = "l0.guardrail.rules"
L0_GUARDRAIL_SEVERITY: Final = "l0.guardrail.severity"
L0_DRIFT_DETECTED: Final = "l0.drift.detected"
L0_DRIFT_SCORE: Final = "l0.drift.score"
L0_DRIFT_THRESHOLD: Final = "l0.drift.threshold"
L0_CHECKPOINT_TOKENS: Final = "l0.checkpoint.token_count"
L0_CHECKPOINT_TEXT: Final = "l0.checkpoint.text"
L0_CHECKPOINTS: Final = "l0.checkpoints"
L0_RESUME_OVERLAP_CHARS: Final = "l0.resume.overlap_chars"
L0_TOKEN_COUNT: Final = "l0.token_count"
L0_TOKENS_PAID: Final = "l0.tokens.paid"
"""Completion tokens of every attempt, failed ones included (``state.tokens_paid``)."""
L0_TOKENS_KEPT: Final = "l0.tokens.kept"
"""The part of ``l0.tokens.paid`` that is in the answer."""
L0_USAGE_ESTIMATED: Final = "l0.usage.estimated"
"""True when some attempt's counts are estimated (its provider reported no usage)."""
L0_TTFT_MS: Final = "l0.ttft_ms"
L0_ABORT_SOURCE: Final = "l0.abort.source"
L0_ZERO_OUTPUT: Final = "l0.zero_output"
L0_GROUP_KIND: Final = "l0.group.kind"
"""``race``, ``parallel``, ``batch``, ``pool`` or ``consensus``."""
L0_GROUP_TASKS: Final = "l0.group.task_count"
L0_GROUP_INDEX: Final = "l0.group.index"
L0_PROVIDER_KEY: Final = "l0.provider.key"
"""Provider health key (base URL|model, or the ``provider=`` given) of a health event."""
L0_HEALTH_ACTION: Final = "l0.health.action"
"""What a held-back or rejected attempt did: ``wait``, ``fallback`` or ``fail``."""

OUTCOME_SUCCESS: Final = "success"
OUTCOME_RECOVERED: Final = "recovered"
OUTCOME_ERROR: Final = "error"
OUTCOME_ABORTED: Final = "aborted"

# --- span names and span event names ---------------------------------------------------------
ATTEMPT_SPAN: Final = "l0.attempt"
EVENT_RETRY: Final = "l0.retry"
EVENT_FALLBACK: Final = "l0.fallback"
EVENT_TIMEOUT: Final = "l0.timeout"
EVENT_VIOLATION: Final = "l0.guardrail.violation"
EVENT_DRIFT: Final = "l0.drift"
EVENT_CHECKPOINT: Final = "l0.checkpoint"
EVENT_RESUME: Final = "l0.resume"
EVENT_TOOL_CALL: Final = "l0.tool_call"
EVENT_NETWORK_ERROR: Final = "l0.network_error"
EVENT_ABORT: Final = "l0.abort"

# --- metrics ---------------------------------------------------------------------------------
METRIC_OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
METRIC_TOKEN_USAGE: Final = "gen_ai.client.token.usage"
METRIC_TIME_TO_FIRST_TOKEN: Final = "l0.time_to_first_token"
METRIC_INTER_TOKEN_GAP: Final = "l0.inter_token_gap"
METRIC_RETRIES: Final = "l0.retries"
METRIC_FALLBACKS: Final = "l0.fallbacks"
METRIC_VIOLATIONS: Final = "l0.guardrail.violations"
METRIC_ZERO_OUTPUT: Final = "l0.zero_outputs"
METRIC_SESSIONS: Final = "l0.sessions"

# Bucket boundaries the conventions recommend (seconds; tokens).
DURATION_BUCKETS: Final = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)
TOKEN_BUCKETS: Final = (
    1,
    4,
    16,
    64,
    256,
    1024,
    4096,
    16384,
    65536,
    262144,
    1048576,
    4194304,
    16777216,
    67108864,
)
GAP_BUCKETS: Final = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)
