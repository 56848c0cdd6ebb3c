"""Evicting computed steps from the step index, for the garbage collector (``node.executor.garbage``).

A step whose output is evicted leaves the step index of the whole cluster first, in one Lua
script, and only then are its bytes unpinned: so no node is ever sent to fetch bytes the index
still promises. The script refuses while any node holds a claim on one of the steps, or while
the unfinished runs are not the ones the collector looked at (a run submitted meanwhile may
plan to reuse the step: the collector looks again). The steps' receipts stay: provenance names
them, and verification reports the evicted output as ``evicted`` (``Keys.evicted``).

Least recently used: ``steps:used`` holds when a run last reused each step (``StepIndex.touch``);
a step never reused since it was recorded counts from its recording time (``steps``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from node.sync.connection import redis_errors, scored_members
from node.sync.keys import Keys

# KEYS: runs:active, steps listing, steps:used, evicted, the content's hash, then each step's
# hash and claim. ARGV: content id, CID, the evicted record (JSON), when the collector looked
# (Redis's clock), n, n active run ids, then the cache ids. Returns -1 if the unfinished runs
# changed, 0 if a step is claimed, names other content or was reused since the look, or the
# content was put again since (a run committing the same bytes under another step): nothing
# written; else how many steps left the index.
_EVICT = """
local since = tonumber(ARGV[4])
local known = {}
local count = tonumber(ARGV[5])
for i = 1, count do known[ARGV[5 + i]] = true end
for _, run in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if not known[run] then return -1 end
end
if tonumber(redis.call('HGET', KEYS[5], 'put_at') or '0') > since then return 0 end
local steps = (#KEYS - 5) / 2
for i = 1, steps do
  local cache_id = ARGV[5 + count + i]
  if redis.call('EXISTS', KEYS[5 + 2 * i]) == 1 then return 0 end
  if redis.call('HGET', KEYS[4 + 2 * i], 'content_id') ~= ARGV[1] then return 0 end
  if tonumber(redis.call('ZSCORE', KEYS[3], cache_id) or '0') > since then return 0 end
end
for i = 1, steps do
  local cache_id = ARGV[5 + count + i]
  redis.call('DEL', KEYS[4 + 2 * i])
  redis.call('ZREM', KEYS[2], cache_id)
  redis.call('ZREM', KEYS[3], cache_id)
end
redis.call('HSET', KEYS[4], ARGV[2], ARGV[3])
return steps
"""


@dataclass(frozen=True)
class Evicted:
    """What became of one eviction: how many steps left the index, or why none did."""

    steps: int = 0
    runs_changed: bool = False  # a run was submitted or finished since the snapshot: look again
    busy: bool = False  # a step is claimed, or its entry changed: skipped this time


class StepEviction:
    """The step index's side of garbage collection: use times, and atomic eviction."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self._redis = client
        self._keys = keys
        self._evict = client.register_script(_EVICT)

    async def last_used(self) -> dict[str, float]:
        """Every recorded step -> when it was last reused, or else recorded."""
        used = dict(await scored_members(self._redis, self._keys.steps_used))
        return {
            cache_id: max(recorded, used.get(cache_id, 0.0))
            for cache_id, recorded in await scored_members(self._redis, self._keys.steps)
        }

    async def now(self) -> float:
        """Redis's clock (the one ``put_at`` and ``steps:used`` are written by), in seconds."""
        with redis_errors():
            seconds, micros = await self._redis.time()
        return float(seconds) + float(micros) / 1_000_000

    async def evict(
        self,
        content_id: str,
        cid: str,
        cache_ids: list[str],
        *,
        active_runs: list[str],
        since: float,
        node: str,
    ) -> Evicted:
        """Drop the steps whose output is ``content_id`` from the index, all or none, unless
        one is claimed, the unfinished runs are no longer ``active_runs``, or since the
        collector looked (``since``, by :meth:`now`) a run reused one of the steps or put the
        same bytes again."""
        keys = [self._keys.runs_active, self._keys.steps, self._keys.steps_used, self._keys.evicted]
        keys.append(self._keys.content(content_id))
        for cache_id in cache_ids:
            keys += [self._keys.step(cache_id), self._keys.claim(cache_id)]
        record = json.dumps({"cache_ids": cache_ids, "node": node, "at": time.time()})
        args = [content_id, cid, record, repr(since), str(len(active_runs)), *active_runs, *cache_ids]
        with redis_errors():
            done = int(await self._evict(keys=keys, args=args))
        if done < 0:
            return Evicted(runs_changed=True)
        return Evicted(steps=done, busy=done == 0)

    async def unpin_later(self, cid: str, content_id: str) -> None:
        """An evicted output the daemon did not unpin (it was away): the next collection does."""
        with redis_errors():
            await self._redis.hset(self._keys.unpins_left, cid, content_id)

    async def unpins_left(self) -> dict[str, str]:
        """CID -> content id of the evicted outputs still to unpin."""
        with redis_errors():
            found = await self._redis.hgetall(self._keys.unpins_left)
        return {str(cid): str(content_id) for cid, content_id in found.items()}

    async def unpinned(self, cid: str) -> None:
        with redis_errors():
            await self._redis.hdel(self._keys.unpins_left, cid)

    async def evicted(self, cids: list[str]) -> dict[str, dict[str, Any]]:
        """Which of ``cids`` the collector evicted: CID -> {cache_ids, node, at}."""
        if not cids:
            return {}
        with redis_errors():
            found = await self._redis.hmget(self._keys.evicted, cids)
        return {cid: json.loads(raw) for cid, raw in zip(cids, found, strict=True) if raw}
