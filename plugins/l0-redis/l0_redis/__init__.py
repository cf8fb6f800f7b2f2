"""Provider health shared through Redis."""

from __future__ import annotations
