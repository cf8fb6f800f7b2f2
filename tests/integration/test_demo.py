"""The README's demo runs offline and shows each recovery it promises."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

DEMO = Path(__file__).parents[2] / "examples" / "demo.py"


def test_demo_recovers_every_scene(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(DEMO), run_name="__main__")
    out = re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out)
    assert out.count("  ok ") == 5
    assert "RateLimitError" in out
    assert "continued after 88 chars" in out
    assert "models ramble. L0 retries\n" in out
    assert "GuardrailError" in out
    assert "DriftError" in out
    assert "InterTokenTimeoutError" in out
    assert "-> falling back" in out
    assert "fallback 1" in out
    assert "giving up" not in out
