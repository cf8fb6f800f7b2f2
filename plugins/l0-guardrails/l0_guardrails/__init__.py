"""Standard guardrail rules and presets for L0.

Installing this distribution registers them under the ``l0`` entry point ``guardrails``; use
them through ``l0.Guardrails`` / ``l0.json_rule()`` or config (``[tool.l0.guardrails]``). The
constructors here build the same rules without a plugin-manager lookup.
"""

from __future__ import annotations

from l0_guardrails.json_rules import json_rule, strict_json_rule
from l0_guardrails.text_rules import (
    DEFAULT_PATTERNS,
    custom_pattern_rule,
    markdown_rule,
    pattern_rule,
    repetition_rule,
    stall_rule,
    zero_output_rule,
)

__all__ = [
    "DEFAULT_PATTERNS",
    "custom_pattern_rule",
    "json_rule",
    "markdown_rule",
    "pattern_rule",
    "repetition_rule",
    "stall_rule",
    "strict_json_rule",
    "zero_output_rule",
]
