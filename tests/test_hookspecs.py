"""l0.hookspecs: every hook is documented, shaped as DESIGN.md says, and listed in the docs."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import l0
from l0 import hookspecs
from l0._runtime import CALLBACK_NAMES

ROOT = Path(__file__).resolve().parent.parent

SPECS: dict[str, Callable[..., Any]] = {
    name: obj
    for name, obj in vars(hookspecs).items()
    if name.startswith("l0_") and inspect.isfunction(obj)
}

DECISIONS = {
    "l0_detect_adapter",
    "l0_categorize_error",
    "l0_retry_decision",
    "l0_backoff_delay",
    "l0_wrap_client",
    "l0_open_health_store",
}
LIFECYCLE = {
    f"l0_on_{event}"
    for event in (
        "start",
        "complete",
        "error",
        "violation",
        "retry",
        "fallback",
        "resume",
        "checkpoint",
        "timeout",
        "abort",
        "drift",
        "tool_call",
    )
}
REGISTRATION = {
    "l0_register_retry_policies",
    "l0_register_guardrails",
    "l0_register_drift_detectors",
}
COLLECT = {"l0_guardrail_check", "l0_export_event"}


def test_the_hooks_design_md_names_exist() -> None:
    assert set(SPECS) == DECISIONS | LIFECYCLE | REGISTRATION | COLLECT


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_hookspec_is_documented(name: str) -> None:
    doc = inspect.getdoc(SPECS[name]) or ""
    assert "Called:" in doc, f"{name}: say when it is called"
    assert "Returns:" in doc, f"{name}: say what it returns"
    summary = doc.splitlines()[0]
    assert summary.endswith("."), f"{name}: the first line is a sentence"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_firstresult_only_for_decisions(name: str) -> None:
    pm = l0.build_plugin_manager(entry_points=False)
    caller = getattr(pm.hook, name)
    assert caller.spec is not None
    assert bool(caller.spec.opts.get("firstresult")) is (name in DECISIONS)
    doc = inspect.getdoc(SPECS[name]) or ""
    if name in DECISIONS:
        assert "None" in doc, f"{name}: say that None defers"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_hooks_are_plain_functions_with_annotations(name: str) -> None:
    spec = SPECS[name]
    assert not inspect.iscoroutinefunction(spec)
    signature = inspect.signature(spec)
    assert all(p.annotation is not inspect.Parameter.empty for p in signature.parameters.values())
    assert signature.return_annotation is not inspect.Signature.empty


def test_lifecycle_hooks_mirror_the_callbacks() -> None:
    assert {f"l0_{c}" for c in CALLBACK_NAMES if c != "on_event"} == LIFECYCLE
    for name in LIFECYCLE:
        assert inspect.signature(SPECS[name]).return_annotation in (None, "None")


def test_registration_hooks_take_no_arguments_and_show_an_example() -> None:
    for name in REGISTRATION:
        assert not inspect.signature(SPECS[name]).parameters
    doc = inspect.getdoc(hookspecs.l0_register_retry_policies) or ""
    assert "Example:" in doc


def test_module_docstring_explains_the_shapes() -> None:
    doc = hookspecs.__doc__ or ""
    for word in ("firstresult", "broadcast", "collect", "async"):
        assert word in doc


def test_docs_list_every_hook() -> None:
    text = (ROOT / "docs" / "plugins.md").read_text()
    missing = [name for name in SPECS if f"`{name}" not in text]
    assert not missing, f"docs/plugins.md does not list {missing}"
