"""L0 plugin entry point (stub)."""

from __future__ import annotations
