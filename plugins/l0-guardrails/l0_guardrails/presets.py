"""The standard presets, built from this package's rules.

``strict_json`` runs the same streaming checks as ``json``, so no preset holds both (one
mistake would be reported twice).

========================  ==================================================================
``minimal``               ``json``, ``zero_output``
``recommended``           ``json``, ``markdown``, ``zero_output``, ``pattern``
``strict``                recommended with ``strict_json`` (only when the output is JSON)
                          in place of ``json``, + ``repetition``, ``stall``
``json_only``             ``strict_json`` (the output must be JSON), ``zero_output``
``markdown_only``         ``markdown``, ``zero_output``
``none``                  nothing (provided by the kernel, needs no plugin)
========================  ==================================================================
"""

from __future__ import annotations

from l0.guardrails import GuardrailRule
from l0_guardrails.json_rules import json_rule, strict_json_rule
from l0_guardrails.text_rules import (
    markdown_rule,
    pattern_rule,
    repetition_rule,
    stall_rule,
    zero_output_rule,
)

__all__ = ["json_only", "markdown_only", "minimal", "recommended", "strict"]


def minimal() -> list[GuardrailRule]:
    """Broken JSON and empty answers only."""
    return [json_rule(), zero_output_rule()]


def recommended() -> list[GuardrailRule]:
    """The default set for most applications."""
    return [json_rule(), markdown_rule(), zero_output_rule(), pattern_rule()]


def strict() -> list[GuardrailRule]:
    """Everything: recommended plus parse checks, loop and stall detection."""
    # strict_json runs the same streaming structure checks as json, so json is not repeated.
    return [
        strict_json_rule(require_json=False),
        markdown_rule(),
        zero_output_rule(),
        pattern_rule(),
        repetition_rule(),
        stall_rule(),
    ]


def json_only() -> list[GuardrailRule]:
    """The answer must be one complete JSON document."""
    return [strict_json_rule(require_json=True), zero_output_rule()]


def markdown_only() -> list[GuardrailRule]:
    """Markdown answers: closed fences, not empty."""
    return [markdown_rule(), zero_output_rule()]
