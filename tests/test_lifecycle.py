"""Golden lifecycle sequences: the order of events and callbacks for each scenario.

Regenerate after an intended change with ``UPDATE_GOLDEN=1 pytest tests/test_lifecycle.py``
and review the diff: the files under tests/golden/ are the documented contract.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.lifecycle_scenarios import SCENARIOS, run_scenario

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_lifecycle_order(name: str) -> None:
    trace = run_scenario(name)
    path = GOLDEN / f"{name}.json"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(json.dumps(trace.items, indent=1) + "\n")
    expected = json.loads(path.read_text())
    assert trace.items == expected
