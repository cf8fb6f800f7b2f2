"""Provider health for L0 shared through Redis.

Install ``l0-redis`` and set ``L0_REDIS_URL`` (or ``[tool.l0.redis] url``): every process then
sees the same circuits, ``Retry-After`` windows and retry budgets. See ``docs/health.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from l0_redis.store import RedisHealthStore

__all__ = ["RedisHealthStore"]


def __getattr__(name: str) -> Any:
    # The store (and the redis client library, slow to import) loads on first use, so an
    # installed plugin with no URL configured costs a process nothing.
    if name == "RedisHealthStore":
        from l0_redis.store import RedisHealthStore

        return RedisHealthStore
    raise AttributeError(f"module 'l0_redis' has no attribute {name!r}")
