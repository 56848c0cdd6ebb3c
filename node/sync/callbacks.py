"""Callbacks waiting to be delivered (``callbacks``: a sorted set scored by when to try next).

A run that names a callback URL has one queued when it reaches its final status. Whichever node
finds it due takes it (ZREM: only one node gets each) and delivers it; one that fails goes back
with a later time. Being in Redis, a callback outlives the node that queued it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from node.sync.connection import redis_errors, scored_members
from node.sync.keys import Keys


@dataclass(frozen=True)
class Callback:
    """One delivery to make: the run, where to, the body (JSON text), and the tries so far."""

    run_id: str
    url: str
    body: str
    attempt: int = 0

    def encoded(self) -> str:
        return json.dumps({"run": self.run_id, "url": self.url, "body": self.body, "attempt": self.attempt})

    @classmethod
    def decoded(cls, raw: str) -> Callback | None:
        try:
            value = json.loads(raw)
            return cls(str(value["run"]), str(value["url"]), str(value["body"]), int(value["attempt"]))
        except (ValueError, TypeError, KeyError):
            return None


class CallbackQueue:
    """Adds, takes (when due) and puts back callbacks."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self._redis = client
        self._keys = keys

    async def add(self, callback: Callback, at: float) -> None:
        with redis_errors():
            await self._redis.zadd(self._keys.callbacks, {callback.encoded(): at})

    async def take_due(self, now: float, limit: int = 16) -> list[Callback]:
        """Callbacks due by ``now``, each taken by this node only (another gets none of them)."""
        with redis_errors():
            key = self._keys.callbacks
            due: list[Any] = await self._redis.zrangebyscore(key, "-inf", now, start=0, num=limit)
            taken = []
            for raw in due:
                if await self._redis.zrem(self._keys.callbacks, str(raw)):
                    taken.append(raw)
        return [callback for raw in taken if (callback := Callback.decoded(str(raw))) is not None]

    async def pending(self) -> list[tuple[Callback, float]]:
        """Every callback waiting, with when it is next tried (for tests and diagnostics)."""
        entries = await scored_members(self._redis, self._keys.callbacks)
        return [(callback, float(at)) for raw, at in entries if (callback := Callback.decoded(str(raw)))]
