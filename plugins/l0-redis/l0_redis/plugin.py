"""The ``redis`` entry point: shares L0 provider health through Redis when a URL is configured."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import l0

if TYPE_CHECKING:
    from l0_redis.store import RedisHealthStore

DEFAULT_PREFIX = "l0:health:"
log = logging.getLogger("l0")


@l0.hookimpl
def l0_open_health_store(settings: Any) -> RedisHealthStore | None:
    """The Redis store when ``[tool.l0.redis] url`` or ``$L0_REDIS_URL`` is set, else ``None``.

    A malformed URL is logged (naming where it came from) and health stays in the process:
    a bad setting of an optional store never stops a stream.
    """
    url = settings.get("redis", "url")
    if url is None:
        return None
    source = settings.sources.get("redis.url", "redis.url")
    from l0_redis.store import RedisHealthStore  # only now: the client library is slow to import

    try:
        return RedisHealthStore(
            url, prefix=settings.get("redis", "prefix", DEFAULT_PREFIX), source=source
        )
    except ValueError as exc:
        message = str(exc)
        if source not in message:
            message = f"{source}: {message}"
        log.warning("l0-redis: %s; provider health is not shared", message)
        return None
