"""Per-user rate limits, counted in Redis so every node sharing it counts the same requests.

A sliding-window log: the times of a user's requests in the last period, in a sorted set. At
most ``count`` requests are let through in any window of ``period`` seconds (exactly, unlike a
fixed window or GCRA's burst), and a refused request learns when the oldest of them leaves the
window: the honest ``Retry-After``. One script, one round trip; a refused request is not
logged, so retrying does not push the time further away. Memory: ``count`` members per user.
"""

from __future__ import annotations

import secrets

import redis.asyncio as aioredis

from node.sync.connection import redis_errors
from node.sync.keys import Keys

# KEYS[1]: the user's log. ARGV: count, period in microseconds, a unique suffix for the member.
# Returns 0 (let through, logged) or the microseconds until a request would be let through.
_ADMIT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local count, period = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - period)
if redis.call('ZCARD', KEYS[1]) >= count then
  local oldest = tonumber(redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2])
  return math.max(oldest + period - now, 1)
end
redis.call('ZADD', KEYS[1], now, now .. ':' .. ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(period / 1000))
return 0
"""


class RateLimiter:
    """Lets a user's requests through at most ``count`` in any ``period_s`` seconds."""

    def __init__(self, client: aioredis.Redis, keys: Keys, count: int, period_s: float) -> None:
        self._keys = keys
        self.count = count
        self._period_us = round(period_s * 1_000_000)
        self._admit = client.register_script(_ADMIT)

    async def admit(self, user: str) -> float:
        """0 if ``user``'s request may go ahead now (and it is counted); else the seconds until
        one would."""
        args = [str(self.count), str(self._period_us), secrets.token_hex(4)]
        with redis_errors():
            wait_us = int(await self._admit(keys=[self._keys.rate(user)], args=args))
        return wait_us / 1_000_000
