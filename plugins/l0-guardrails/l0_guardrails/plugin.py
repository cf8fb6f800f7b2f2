"""The ``guardrails`` entry point: offers the standard rules and presets by name."""

from __future__ import annotations

from collections.abc import Iterator

import l0
from l0.guardrails import PresetSpec, RuleSpec
from l0_guardrails import presets
from l0_guardrails.json_rules import json_rule, strict_json_rule
from l0_guardrails.text_rules import (
    custom_pattern_rule,
    markdown_rule,
    pattern_rule,
    repetition_rule,
    stall_rule,
    zero_output_rule,
)


@l0.hookimpl
def l0_register_guardrails() -> Iterator[RuleSpec | PresetSpec]:
    """Offer the standard rules and presets."""
    yield RuleSpec("json", json_rule, "balanced JSON structure, checked while streaming")
    yield RuleSpec("strict_json", strict_json_rule, "complete, parseable JSON at the end")
    yield RuleSpec("markdown", markdown_rule, "code fences closed by the end")
    yield RuleSpec("pattern", pattern_rule, "meta statements ('As an AI…') and refusals")
    yield RuleSpec("custom_pattern", custom_pattern_rule, "your own forbidden regexes")
    yield RuleSpec("zero_output", zero_output_rule, "empty or whitespace-only output")
    yield RuleSpec("stall", stall_rule, "tokens arrive without visible text")
    yield RuleSpec("repetition", repetition_rule, "looping output")
    yield PresetSpec("minimal", factory=presets.minimal, description="json, zero_output")
    yield PresetSpec(
        "recommended",
        factory=presets.recommended,
        description="json, markdown, zero_output, pattern",
    )
    yield PresetSpec(
        "strict",
        factory=presets.strict,
        description="recommended + strict_json, repetition, stall",
    )
    yield PresetSpec("json_only", factory=presets.json_only, description="strict_json, zero_output")
    yield PresetSpec(
        "markdown_only", factory=presets.markdown_only, description="markdown, zero_output"
    )
