"""Faults every SDK integration test recovers from, shared by the OpenAI and LiteLLM suites."""

from __future__ import annotations

from typing import Any

import pytest

import l0
from l0.testing import Fault


def recoverable_faults() -> list[Any]:
    """``(fault, timeout, category)`` params: one fault, then a clean answer."""
    return [
        pytest.param(Fault.status(429, headers={"Retry-After": "0"}), None, "transient", id="429"),
        pytest.param(Fault.status(500), None, "transient", id="500"),
        pytest.param(Fault.status(502), None, "transient", id="502"),
        pytest.param(Fault.status(503), None, "transient", id="503"),
        pytest.param(Fault.drop_after(3), None, "network", id="drop_after"),
        pytest.param(Fault.drop_after(0), None, "network", id="drop_before_text"),
        pytest.param(
            Fault.stall_after(3, seconds=5),
            l0.Timeout(inter_token=0.2),
            "network",
            id="stall_after",
        ),
        pytest.param(
            Fault.slow_first_token(5),
            l0.Timeout(initial_token=0.2),
            "network",
            id="slow_first_token",
        ),
        pytest.param(
            Fault.slow_headers(5), l0.Timeout(initial_token=0.2), "network", id="slow_headers"
        ),
        pytest.param(Fault.zero_output(), None, "transient", id="zero_output"),
    ]
