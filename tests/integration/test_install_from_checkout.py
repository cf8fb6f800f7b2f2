"""Issue 8: ``l0[standard]`` installs from a checkout with the command the docs give.

The distributions are not on an index while developing, so the command passes the local plugin
folders alongside ``.[standard]``; the installer takes them as the ``l0-guardrails`` and
``l0-drift`` the extra asks for. The venv is built with uv from its cache when uv is there
(offline, seconds), else with venv and pip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The command of docs/index.md ("From a checkout"), run in the repository root.
PACKAGES = [".[standard]", "./plugins/l0-guardrails", "./plugins/l0-drift"]

CHECK = """
import l0
pm = l0.build_plugin_manager()
names = {info.name for info in pm.list_plugins()}
assert {"guardrails", "drift"} <= names, names
l0.Guardrails.recommended()  # needs l0-guardrails
"""


def run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        args, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False, env=env
    )
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done


def test_standard_extra_installs_from_a_checkout(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    uv = shutil.which("uv")
    if uv is not None:
        run([uv, "venv", "-q", "--python", sys.executable, str(venv)], env=env)
        install = [uv, "pip", "install", "-q", "--python", str(python), "--offline"]
        done = subprocess.run(
            [*install, *PACKAGES],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            env=env,
        )
        if done.returncode != 0:  # not all in uv's cache: let it use the index
            run([uv, "pip", "install", "-q", "--python", str(python), *PACKAGES], env=env)
    else:
        run([sys.executable, "-m", "venv", str(venv)])
        run([str(python), "-m", "pip", "install", "-q", *PACKAGES], env=env)
    run([str(python), "-c", CHECK], env=env)
