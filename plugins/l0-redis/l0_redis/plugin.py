"""L0 provider health in Redis."""

from __future__ import annotations
