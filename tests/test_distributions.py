"""Every distribution of the workspace moves in lockstep and declares a compatible l0 range."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.dist_check import check_versions

ROOT = Path(__file__).resolve().parent.parent
PROJECTS = [
    str(p.parent)
    for pattern in ("pyproject.toml", "l0-*/pyproject.toml", "plugins/l0-*/pyproject.toml")
    for p in sorted(ROOT.glob(pattern))
]


def test_versions_move_in_lockstep_and_ranges_admit_the_kernel() -> None:
    versions = check_versions(PROJECTS)
    assert {"l0", "l0-openai", "l0-guardrails", "l0-drift"} <= set(versions)


def test_a_range_without_an_upper_bound_fails(tmp_path: Path) -> None:
    kernel = tmp_path / "kernel"
    plugin = tmp_path / "plugin"
    for folder, body in (
        (kernel, 'name = "l0"\nversion = "0.1.0"\n'),
        (plugin, 'name = "l0-x"\nversion = "0.1.0"\ndependencies = ["l0>=0.1"]\n'),
    ):
        folder.mkdir()
        (folder / "pyproject.toml").write_text(f"[project]\n{body}")
    with pytest.raises(SystemExit):
        check_versions([str(kernel), str(plugin)])
