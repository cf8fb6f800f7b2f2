"""L0: reliable LLM token streams.

``l0.run(stream=factory, ...)`` adds retries, fallbacks, timeouts, zero-output detection,
abort and lifecycle callbacks to any async token stream; ``l0.wrap`` does the same for a single
stream or an SDK client. Behaviour is extended by plugins (``@l0.hookimpl``) loaded from the
``l0`` entry-point group.
"""

from __future__ import annotations

from l0 import errors, record
from l0._api import Result, run, wrap
from l0._group import AllTasksFailedError, TaskOutcome
from l0.adapters import Adapters
from l0.consensus import ConsensusError, ConsensusResult, consensus
from l0.drift import DriftConfig, DriftResult
from l0.errors import (
    AbortedError,
    ConfigError,
    L0Error,
    RetryExhaustedError,
    StructuredOutputError,
    categorize_error,
)
from l0.events import ObservabilityEvent, ObservabilityEventType
from l0.guardrails import (
    GuardrailContext,
    GuardrailRule,
    Guardrails,
    custom_pattern_rule,
    json_rule,
    markdown_rule,
    pattern_rule,
    repetition_rule,
    stall_rule,
    strict_json_rule,
    zero_output_rule,
)
from l0.health import Health
from l0.parallel import ParallelResult, batched, parallel
from l0.plugins import (
    L0PluginManager,
    build_plugin_manager,
    default_plugin_manager,
    hookimpl,
    reset_default_plugin_manager,
)
from l0.pool import LocalRateLimiter, Pool, RateLimiter
from l0.race import RaceResult, RaceStream, race, race_stream
from l0.record import replay
from l0.retry import Retry
from l0.structured_output import StructuredResult, StructuredStream, structured, structured_stream
from l0.timeout import Timeout
from l0.types import (
    Adapter,
    AttemptContext,
    BackoffStrategy,
    ErrorCategory,
    Event,
    EventType,
    GuardrailViolation,
    RetryDecision,
    RetryPolicySpec,
    State,
)

__version__ = "0.1.0"

__all__ = [
    "AbortedError",
    "Adapter",
    "Adapters",
    "AllTasksFailedError",
    "AttemptContext",
    "BackoffStrategy",
    "ConfigError",
    "ConsensusError",
    "ConsensusResult",
    "DriftConfig",
    "DriftResult",
    "ErrorCategory",
    "Event",
    "EventType",
    "GuardrailContext",
    "GuardrailRule",
    "GuardrailViolation",
    "Guardrails",
    "Health",
    "L0Error",
    "L0PluginManager",
    "LocalRateLimiter",
    "ObservabilityEvent",
    "ObservabilityEventType",
    "ParallelResult",
    "Pool",
    "RaceResult",
    "RaceStream",
    "RateLimiter",
    "Result",
    "Retry",
    "RetryDecision",
    "RetryExhaustedError",
    "RetryPolicySpec",
    "State",
    "StructuredOutputError",
    "StructuredResult",
    "StructuredStream",
    "TaskOutcome",
    "Timeout",
    "__version__",
    "batched",
    "build_plugin_manager",
    "categorize_error",
    "consensus",
    "custom_pattern_rule",
    "default_plugin_manager",
    "errors",
    "hookimpl",
    "json_rule",
    "markdown_rule",
    "parallel",
    "pattern_rule",
    "race",
    "race_stream",
    "record",
    "repetition_rule",
    "replay",
    "reset_default_plugin_manager",
    "run",
    "stall_rule",
    "strict_json_rule",
    "structured",
    "structured_stream",
    "wrap",
    "zero_output_rule",
]
