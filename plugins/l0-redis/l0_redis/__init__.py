"""Provider health for L0 shared through Redis.

Install ``l0-redis`` and set ``L0_REDIS_URL`` (or ``[tool.l0.redis] url``): every process then
sees the same circuits, ``Retry-After`` windows and retry budgets. See ``docs/health.md``.
"""

from __future__ import annotations

from l0_redis.store import RedisHealthStore

__all__ = ["RedisHealthStore"]
