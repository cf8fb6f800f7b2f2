"""The kernel's import graph: config, errors and plugins form no cycle (issue 8)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

KERNEL = Path(__file__).resolve().parent.parent / "l0"
LAYERED = (
    "l0._error_types",
    "l0.errors",
    "l0._config_schema",
    "l0.config",
    "l0._plugin_hooks",
    "l0._plugin_manager",
    "l0.plugins",
)


def _imports(module: str) -> set[str]:
    """Every ``l0`` module ``module`` imports at run time (lazy imports included).

    Imports under ``if TYPE_CHECKING:`` are left out: they never run.
    """
    path = KERNEL / (module.removeprefix("l0.").replace(".", "/") + ".py")
    tree = ast.parse(path.read_text())
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for branch in node.orelse:
                visit(branch)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("l0"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("l0"):
            found.add(node.module)
            # ``from l0 import errors`` imports the submodule l0.errors.
            found.update(f"{node.module}.{a.name}" for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def test_errors_config_plugins_are_layered() -> None:
    graph = {module: _imports(module) & set(LAYERED) for module in LAYERED}
    errors = {"l0._error_types", "l0.errors"}
    assert graph["l0._error_types"] == set()
    assert graph["l0.errors"] == {"l0._error_types"}
    assert graph["l0._config_schema"] <= errors
    assert graph["l0.config"] <= errors | {"l0._config_schema"}
    # The facade and the manager class sit below l0.plugins and never import config or it.
    assert graph["l0._plugin_hooks"] <= errors
    assert graph["l0._plugin_manager"] <= errors | {"l0._plugin_hooks"}
    assert graph["l0.plugins"] <= errors | {"l0._config_schema", "l0.config"} | {
        "l0._plugin_hooks",
        "l0._plugin_manager",
    }


# Modules split off others (and those they were split from), and the exporter plugins' shared
# settings helper: each must import first, alone.
SPLIT = (
    "l0.testing._transport",
    "l0.testing.server",
    "l0_otel._attempts",
    "l0_otel.exporter",
    "l0.plugin_settings",
    "l0_otel.settings",
    "l0_sentry.settings",
)


@pytest.mark.parametrize("module", [*LAYERED, "l0.retry", "l0.types", "l0.hookspecs", *SPLIT])
def test_each_module_imports_alone(module: str) -> None:
    code = f"import {module}, sys; assert {module!r} in sys.modules"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
