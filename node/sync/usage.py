"""How many bytes each user holds, kept exact by the scripts that add and remove what holds them.

A user holds content while they own it (an upload, an import, a recipe) or while a run of
theirs that made it is kept. Each content counts once per user however many holds they have on
it (two runs with the same output, or that output uploaded too), and once for EACH user who
holds it (shared bytes are stored once, but each owner chose to keep them). The figure lives in
``usage:{owner}`` (a hash: ``bytes`` in all; ``n:{content_id}`` the holds and ``s:{content_id}``
the size counted), changed only by Lua inside the same script that adds or drops an owner or
finishes or deletes a run, so no crash or race between the two can make it drift.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from node.sync.connection import redis_errors
from node.sync.keys import Keys

# Lua functions the index and run scripts start with. ``hold`` counts a content's size the
# first time a user holds it; ``release`` uncounts it when their last hold goes. A release
# without a hold (content owned before usage was counted) changes nothing.
USAGE_LUA = """
local function hold(key, id, size)
  if redis.call('HINCRBY', key, 'n:' .. id, 1) == 1 then
    redis.call('HSET', key, 's:' .. id, size)
    redis.call('HINCRBY', key, 'bytes', size)
  end
end
local function release(key, id)
  local left = redis.call('HINCRBY', key, 'n:' .. id, -1)
  if left > 0 then return end
  if left == 0 then
    redis.call('HINCRBY', key, 'bytes', -tonumber(redis.call('HGET', key, 's:' .. id) or '0'))
  end
  redis.call('HDEL', key, 'n:' .. id, 's:' .. id)
end
local function used(key)
  return tonumber(redis.call('HGET', key, 'bytes') or '0')
end
"""

# Add owners ARGV[2..n-1] to content ARGV[1]'s owners (KEYS[1]); each newly added one holds it
# (ARGV[n]: its size) in their usage hash, KEYS[i] for ARGV[i].
_ADD_OWNERS = (
    USAGE_LUA
    + """
local size = ARGV[#ARGV]
for i = 2, #ARGV - 1 do
  if redis.call('SADD', KEYS[1], ARGV[i]) == 1 then hold(KEYS[i], ARGV[1], size) end
end
return 0
"""
)

# Drop owners ARGV[2..] of content ARGV[1] from KEYS[1], each one that was an owner releasing
# its hold in their usage hash, KEYS[i] for ARGV[i]. Returns the owners left.
_REMOVE_OWNERS = (
    USAGE_LUA
    + """
for i = 2, #KEYS do
  if redis.call('SREM', KEYS[1], ARGV[i]) == 1 then release(KEYS[i], ARGV[1]) end
end
return redis.call('SMEMBERS', KEYS[1])
"""
)


class Usage:
    """Reads the per-user figures; the writes are in the content and run scripts."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self._redis = client
        self._keys = keys
        self._add_owners = client.register_script(_ADD_OWNERS)
        self._remove_owners = client.register_script(_REMOVE_OWNERS)

    async def stored_bytes(self, owner: str) -> int:
        """The bytes ``owner`` holds (each content once)."""
        with redis_errors():
            return int(await self._redis.hget(self._keys.usage(owner), "bytes") or 0)

    async def unfinished_runs(self, owner: str) -> int:
        """How many of ``owner``'s runs are queued or running, cluster-wide."""
        with redis_errors():
            return int(await self._redis.zcard(self._keys.runs_active_of(owner)))

    async def add_owners(self, content_id: str, size: int, owners: list[str], *, client: Any = None) -> None:
        """Add ``owners`` to content, each holding it (``client``: a pipeline to queue it on)."""
        keys = [self._keys.content_owners(content_id), *map(self._keys.usage, owners)]
        with redis_errors():
            await self._add_owners(keys=keys, args=[content_id, *owners, str(size)], client=client)

    async def remove_owners(self, content_id: str, owners: list[str]) -> set[str]:
        """Drop ``owners`` from content, releasing their holds; the owners left."""
        keys = [self._keys.content_owners(content_id), *map(self._keys.usage, owners)]
        with redis_errors():
            left = await self._remove_owners(keys=keys, args=[content_id, *owners])
        return {str(owner) for owner in left}
