"""The Redis health store: every update is one Lua script, so it is atomic across processes.

Keys (``prefix`` is ``l0:health:`` unless configured), all expiring on their own:

* ``<prefix><key>`` — a hash: ``state`` (``open``/``half_open``; absent = closed),
  ``failures``, ``fail_start``, ``open_until``, ``probe_until``, ``ra_until`` (ms, Redis time);
* ``<prefix><key>:budget`` — a hash of per-second counters ``q<sec>`` (first attempts) and
  ``r<sec>`` (retries) for the retry budget's sliding window.

Times come from the Redis server (``TIME``), so processes on machines with skewed clocks agree.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis

from l0.health import Admission, Health

__all__ = ["RedisHealthStore"]

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

_ADMIT = (
    _NOW
    + """
local h = redis.call('HMGET', KEYS[1], 'state', 'open_until', 'probe_until', 'ra_until')
local ra = tonumber(h[4] or '0')
if ra > now then return {'wait', ra - now, 0} end
local lease = tonumber(ARGV[2])
if h[1] == 'open' or h[1] == 'half_open' then
  local pu = tonumber(h[3] or '0')
  if pu > now then return {'open', pu - now, 0} end
  local ou = tonumber(h[2] or '0')
  if h[1] == 'open' and now < ou then return {'open', ou - now, 0} end
  redis.call('HSET', KEYS[1], 'state', 'half_open', 'probe_until', now + lease)
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]))
  if h[1] == 'open' then return {'probe', 0, 1} end
  return {'probe', 0, 0}
end
if ARGV[1] == '0' then
  redis.call('HINCRBY', KEYS[2], 'q' .. math.floor(now / 1000), 1)
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[3]) + 2000)
end
return {'go', 0, 0}
"""
)

_RECORD = (
    _NOW
    + """
local ok, outage, probe = ARGV[1] == '1', ARGV[2] == '1', ARGV[3] == '1'
local threshold, window, open_ms, ttl = tonumber(ARGV[4]), tonumber(ARGV[5]),
  tonumber(ARGV[6]), tonumber(ARGV[7])
local h = redis.call('HMGET', KEYS[1], 'state', 'failures', 'fail_start')
local state = h[1] or 'closed'
if state ~= 'closed' then
  if not probe then return '' end
  if ok or not outage then
    redis.call('HDEL', KEYS[1], 'state', 'open_until', 'probe_until', 'failures', 'fail_start')
    return 'closed'
  end
  redis.call('HSET', KEYS[1], 'state', 'open', 'open_until', now + open_ms, 'probe_until', 0)
  redis.call('PEXPIRE', KEYS[1], ttl)
  return 'opened'
end
if ok or not outage then
  if ok then redis.call('HDEL', KEYS[1], 'failures', 'fail_start') end
  return ''
end
local failures = tonumber(h[2] or '0')
local start = tonumber(h[3] or '0')
if failures == 0 or now - start > window then failures = 0; start = now end
failures = failures + 1
if failures >= threshold then
  redis.call('HSET', KEYS[1], 'state', 'open', 'open_until', now + open_ms, 'probe_until', 0)
  redis.call('HDEL', KEYS[1], 'failures', 'fail_start')
  redis.call('PEXPIRE', KEYS[1], ttl)
  return 'opened'
end
redis.call('HSET', KEYS[1], 'failures', failures, 'fail_start', start)
redis.call('PEXPIRE', KEYS[1], ttl)
return ''
"""
)

_RETRY_AFTER = (
    _NOW
    + """
local till = now + tonumber(ARGV[1])
local ra = tonumber(redis.call('HGET', KEYS[1], 'ra_until') or '0')
if till > ra then redis.call('HSET', KEYS[1], 'ra_until', till) end
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) + 1000 then
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]))
end
return 1
"""
)

_RETRY_TOKEN = (
    _NOW
    + """
local ratio, floor, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local since = math.floor((now - window) / 1000)
local fields = redis.call('HGETALL', KEYS[1])
local q, r = 0, 0
for i = 1, #fields, 2 do
  local name, count = fields[i], tonumber(fields[i + 1])
  local sec = tonumber(string.sub(name, 2))
  if sec < since then
    redis.call('HDEL', KEYS[1], name)
  elseif string.sub(name, 1, 1) == 'q' then
    q = q + count
  else
    r = r + count
  end
end
if r + 1 > math.max(floor, ratio * q) then return {0, r, q} end
redis.call('HINCRBY', KEYS[1], 'r' .. math.floor(now / 1000), 1)
redis.call('PEXPIRE', KEYS[1], window + 2000)
return {1, r + 1, q}
"""
)


def redacted(url: str) -> str:
    """``url`` without its password, for messages and status reports."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


class RedisHealthStore:
    """Provider health in Redis, shared by every process configured with the same URL.

    Args:
        url: ``redis://``, ``rediss://`` or ``unix://`` URL.
        prefix: Namespace of every key this store writes.
        source: Where the URL came from (named in messages), e.g. ``$L0_REDIS_URL``.

    Raises:
        ValueError: ``url`` is not a Redis URL.
    """

    def __init__(self, url: str, *, prefix: str = "l0:health:", source: str = "redis.url"):
        """Check the URL now; connect lazily, once per event loop."""
        scheme = urlsplit(url).scheme
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError(
                f"{source} = {redacted(url)!r}: expected a redis://, rediss:// or unix:// URL"
            )
        # redis-py parses the rest (port, db, options) and says what is wrong.
        aioredis.ConnectionPool.from_url(url)
        self.url = url
        self.prefix = prefix
        self.source = source
        self.name = f"redis ({source})"
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )

    def _client(self) -> Any:
        # A redis.asyncio connection belongs to the loop that opened it; test suites and
        # `asyncio.run` per request make several loops over a store's life.
        loop = asyncio.get_running_loop()
        entry = self._clients.get(loop)
        if entry is None:
            client = aioredis.Redis.from_url(
                self.url, socket_connect_timeout=1.0, socket_timeout=1.0, decode_responses=True
            )
            entry = (
                client,
                client.register_script(_ADMIT),
                client.register_script(_RECORD),
                client.register_script(_RETRY_AFTER),
                client.register_script(_RETRY_TOKEN),
            )
            self._clients[loop] = entry
        return entry

    async def admit(self, key: str, retry: bool, config: Health) -> Admission:
        """See :class:`l0.health.HealthStore`."""
        _, admit, _, _, _ = self._client()
        base = self.prefix + key
        ttl = _ttl(config)
        verdict, wait_ms, half_open = await admit(
            keys=[base, base + ":budget"],
            args=[
                "1" if retry else "0",
                int(config.open_seconds * 1000),
                int(config.budget_window * 1000),
                ttl,
            ],
        )
        return Admission(verdict, int(wait_ms) / 1000, bool(int(half_open)))

    async def record(self, key: str, ok: bool, outage: bool, probe: bool, config: Health) -> str:
        """See :class:`l0.health.HealthStore`."""
        _, _, record, _, _ = self._client()
        answer = await record(
            keys=[self.prefix + key],
            args=[
                int(ok),
                int(outage),
                int(probe),
                config.failure_threshold,
                int(config.failure_window * 1000),
                int(config.open_seconds * 1000),
                _ttl(config),
            ],
        )
        return str(answer or "")

    async def note_retry_after(self, key: str, seconds: float) -> None:
        """See :class:`l0.health.HealthStore`."""
        _, _, _, retry_after, _ = self._client()
        await retry_after(keys=[self.prefix + key], args=[int(seconds * 1000), 60_000])

    async def take_retry_token(self, key: str, config: Health) -> tuple[bool, int, int]:
        """See :class:`l0.health.HealthStore`."""
        _, _, _, _, token = self._client()
        allowed, retries, requests = await token(
            keys=[self.prefix + key + ":budget"],
            args=[config.retry_budget, config.retry_budget_min, int(config.budget_window * 1000)],
        )
        return bool(int(allowed)), int(retries), int(requests)

    async def status(self) -> Mapping[str, Any]:
        """Ping Redis: ``{"ok", "url", "latency_ms"}`` or ``{"ok": False, "url", "error"}``."""
        client = self._client()[0]
        started = time.perf_counter()
        try:
            await client.ping()
        except Exception as exc:
            return {"ok": False, "url": redacted(self.url), "error": f"{type(exc).__name__}: {exc}"}
        latency = (time.perf_counter() - started) * 1000
        return {"ok": True, "url": redacted(self.url), "latency_ms": round(latency, 3)}

    async def aclose(self) -> None:
        """Close this event loop's connection to Redis."""
        loop = asyncio.get_running_loop()
        entry = self._clients.pop(loop, None)
        if entry is not None:
            await entry[0].aclose()


def _ttl(config: Health) -> int:
    """Milliseconds a key's hash outlives its last update: nothing in it matters after that."""
    return int(max(config.failure_window, config.open_seconds * 2, config.budget_window) * 1000)
