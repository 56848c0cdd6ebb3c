"""Typed access to the content and step indexes in Redis.

The content index maps a SHA3-256 content id to where its bytes live in IPFS (and back, by
CID); the step index maps a step cache id to its computed output. Both are written only after
the bytes are pinned, so an entry always names content this node can serve.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import redis.asyncio as aioredis

from node.sync.connection import redis_errors
from node.sync.keys import Keys

# Write a step entry only if none exists: a computed result is never overwritten.
_PUT_STEP_IF_ABSENT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""


@dataclass(frozen=True)
class ContentEntry:
    """One item of content: its SHA3-256 id, its CID and what it is."""

    content_id: str
    cid: str
    size: int
    media_type: str
    created: float = field(default_factory=time.time)

    @classmethod
    def from_hash(cls, content_id: str, fields: Mapping[Any, Any]) -> ContentEntry:
        return cls(
            content_id=content_id,
            cid=fields["cid"],
            size=int(fields["size"]),
            media_type=fields["media_type"],
            created=float(fields["created"]),
        )


@dataclass(frozen=True)
class StepEntry:
    """A computed step: its output's CID and content id, and the receipt of who computed it."""

    cache_id: str
    cid: str
    content_id: str
    size: int
    media_type: str
    receipt_cid: str = ""

    @classmethod
    def from_hash(cls, cache_id: str, fields: Mapping[Any, Any]) -> StepEntry:
        return cls(
            cache_id=cache_id,
            cid=fields["cid"],
            content_id=fields["content_id"],
            size=int(fields["size"]),
            media_type=fields["media_type"],
            receipt_cid=fields.get("receipt_cid", ""),
        )


def _fields(entry: ContentEntry | StepEntry, key_field: str) -> dict[Any, Any]:
    return {name: str(value) for name, value in asdict(entry).items() if name != key_field}


class ContentIndex:
    """``content:{id}`` hashes, the ``cid:`` inverse mapping and the ``contents`` listing."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self._redis = client
        self._keys = keys

    async def put(self, entry: ContentEntry) -> None:
        """Index content idempotently; a second put keeps the first creation time."""
        key = self._keys.content(entry.content_id)
        fields = _fields(entry, "content_id")
        created = fields.pop("created")
        with redis_errors():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping=fields)
                pipe.hsetnx(key, "created", created)
                pipe.set(self._keys.cid(entry.cid), entry.content_id)
                pipe.zadd(self._keys.contents, {entry.content_id: entry.created}, nx=True)
                await pipe.execute()

    async def get(self, content_id: str) -> ContentEntry | None:
        key = self._keys.content(content_id)
        with redis_errors():
            fields = await self._redis.hgetall(key)
        return ContentEntry.from_hash(content_id, fields) if fields else None

    async def content_id_for_cid(self, cid: str) -> str | None:
        with redis_errors():
            value = await self._redis.get(self._keys.cid(cid))
        return str(value) if value is not None else None

    async def newest(self, offset: int, limit: int) -> tuple[list[str], int]:
        """A page of content ids, newest first, and the total count."""
        with redis_errors():
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zrevrange(self._keys.contents, offset, offset + limit - 1)
                pipe.zcard(self._keys.contents)
                ids, total = await pipe.execute()
        return list(ids), int(total)

    async def add_owner(self, content_id: str, owner: str) -> None:
        with redis_errors():
            await self._redis.sadd(self._keys.content_owners(content_id), owner)

    async def owners(self, content_id: str) -> set[str]:
        with redis_errors():
            return {str(owner) for owner in await self._redis.smembers(self._keys.content_owners(content_id))}

    async def add_run(self, content_id: str, run_id: str) -> None:
        with redis_errors():
            await self._redis.sadd(self._keys.content_runs(content_id), run_id)

    async def runs(self, content_id: str) -> set[str]:
        with redis_errors():
            return {str(run) for run in await self._redis.smembers(self._keys.content_runs(content_id))}


class StepIndex:
    """``step:{cache_id}`` hashes: the results any node may reuse instead of recomputing."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self._redis = client
        self._keys = keys
        self._put_if_absent = client.register_script(_PUT_STEP_IF_ABSENT)

    async def get(self, cache_id: str) -> StepEntry | None:
        key = self._keys.step(cache_id)
        with redis_errors():
            fields = await self._redis.hgetall(key)
        return StepEntry.from_hash(cache_id, fields) if fields else None

    async def put_if_absent(self, entry: StepEntry) -> bool:
        """Record a computed step; False (and nothing written) if it was already recorded."""
        key = self._keys.step(entry.cache_id)
        flat = [part for pair in _fields(entry, "cache_id").items() for part in pair]
        with redis_errors():
            return bool(await self._put_if_absent(keys=[key], args=flat))
