"""Drift detectors for L0, registered under the ``l0`` entry point ``drift``.

Install this distribution and ``l0.run(..., drift=True)`` runs every detector here; see
:mod:`l0_drift.detectors` for what each one measures.
"""

from __future__ import annotations

from l0_drift.detectors import (
    EntropyCollapse,
    FormatDrift,
    MetaCommentary,
    Repetition,
    ToneShift,
)

__all__ = ["EntropyCollapse", "FormatDrift", "MetaCommentary", "Repetition", "ToneShift"]
