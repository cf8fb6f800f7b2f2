"""The ``drift`` L0 plugin: registers the standard drift detectors."""

from __future__ import annotations

from collections.abc import Iterator

from l0.drift import DetectorSpec
from l0.plugins import hookimpl
from l0_drift.detectors import SPECS

__all__ = ["l0_register_drift_detectors"]


@hookimpl
def l0_register_drift_detectors() -> Iterator[DetectorSpec]:
    """Offer repetition, meta_commentary, tone_shift, format_drift and entropy_collapse."""
    yield from SPECS
