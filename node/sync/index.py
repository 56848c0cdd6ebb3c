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

from node.media.kinds import kind_of
from node.sync.connection import hashes, redis_errors, scored_members
from node.sync.keys import MEDIA_KINDS, Keys
from node.sync.usage import USAGE_LUA, Usage

# Index content, its owner and asset name in one step; refuse (writing nothing) an asset name
# that already names other content, or a new owner whose usage would pass their quota (ARGV[9],
# bytes; 0: none). Media (ARGV[8]: its kind, '' for none) is listed in ``media`` and its kind's
# listing (kinds in ARGV[10..], their listings in KEYS[7..]), by the content's first creation
# time; listings of another kind drop it (a later put may say what it is more exactly). The
# owner's usage hash is the last key, when there is an owner.
# KEYS: content, cid, contents, owners, assets, media, media:{kind}..., usage:{owner}?
# ARGV: content_id, cid, size, media_type, created, owner, asset, kind, quota, kinds...
# Returns {existed, taken_by, used_when_refused}.
_PUT_CONTENT = (
    USAGE_LUA
    + """
local existed = redis.call('EXISTS', KEYS[1])
if ARGV[7] ~= '' then
  local current = redis.call('HGET', KEYS[5], ARGV[7])
  if current and current ~= ARGV[1] then return {existed, current, false} end
end
local owner, usage = ARGV[6], KEYS[#KEYS]
local new_owner = owner ~= '' and redis.call('SISMEMBER', KEYS[4], owner) == 0
local quota = tonumber(ARGV[9])
if new_owner and quota > 0 and used(usage) + tonumber(ARGV[3]) > quota then
  return {existed, false, used(usage)}
end
local now = redis.call('TIME')
-- put_at: the garbage collector evicts nothing put again since it looked (node.sync.eviction)
redis.call('HSET', KEYS[1], 'cid', ARGV[2], 'size', ARGV[3], 'media_type', ARGV[4],
           'put_at', now[1] + now[2] / 1000000)
redis.call('HSETNX', KEYS[1], 'created', ARGV[5])
redis.call('SET', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], 'NX', ARGV[5], ARGV[1])
if new_owner then
  redis.call('SADD', KEYS[4], owner)
  hold(usage, ARGV[1], ARGV[3])
end
if ARGV[7] ~= '' then redis.call('HSET', KEYS[5], ARGV[7], ARGV[1]) end
local created = redis.call('HGET', KEYS[1], 'created')
if ARGV[8] ~= '' then
  redis.call('ZADD', KEYS[6], 'NX', created, ARGV[1])
else
  redis.call('ZREM', KEYS[6], ARGV[1])
end
for i = 7, 6 + #ARGV - 9 do
  if ARGV[i + 3] == ARGV[8] then
    redis.call('ZADD', KEYS[i], 'NX', created, ARGV[1])
  else
    redis.call('ZREM', KEYS[i], ARGV[1])
  end
end
return {existed, false, false}
"""
)

# KEYS[1]: steps:used; ARGV[1]: the cache id, used now (Redis's clock, the same for every node).
_TOUCH = """
local now = redis.call('TIME')
redis.call('ZADD', KEYS[1], now[1] + now[2] / 1000000, ARGV[1])
return 0
"""

# Write a step entry only if none exists: a computed result is never overwritten; list it in
# the steps listing (KEYS[2]). KEYS[3], when given, gets the signed receipt (ARGV[1]) in the
# same step. ARGV[2]: the cache id; ARGV[3..]: the entry's fields.
_PUT_STEP_IF_ABSENT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
local now = redis.call('TIME')
redis.call('ZADD', KEYS[2], 'NX', now[1] + now[2] / 1000000, ARGV[2])
if KEYS[3] then redis.call('SET', KEYS[3], ARGV[1]) end
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
    node: str = ""  # who computed it: the receipt's signer (empty: no receipt, or recorded before)

    @classmethod
    def from_hash(cls, cache_id: str, fields: Mapping[Any, Any]) -> StepEntry:
        return cls(
            cache_id=cache_id,
            cid=fields["cid"],
            content_id=fields["content_id"],
            size=int(fields["size"]),
            media_type=fields["media_type"],
            receipt_cid=fields.get("receipt_cid", ""),
            node=fields.get("node", ""),
        )


def _fields(entry: ContentEntry | StepEntry, key_field: str) -> dict[Any, Any]:
    return {name: str(value) for name, value in asdict(entry).items() if name != key_field}


def step_fields(entry: StepEntry) -> dict[str, str]:
    """The fields of a ``step:`` hash (what :meth:`StepEntry.from_hash` reads back)."""
    return dict(_fields(entry, "cache_id"))


@dataclass(frozen=True)
class HeldContent:
    """A content entry with who owns it and which runs hold it (a snapshot's content item)."""

    entry: ContentEntry
    owners: list[str]
    runs: list[str]


@dataclass(frozen=True)
class PutResult:
    existed: bool  # the content was indexed before this put
    name_taken_by: str | None = None  # content id the asset name already names (nothing written)
    used: int | None = None  # the owner's usage, when their quota refused the put (nothing written)


class ContentIndex:
    """``content:{id}`` hashes, the ``cid:`` inverse mapping, the ``contents`` listing, owners and
    asset names."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self._redis = client
        self._keys = keys
        self._put = client.register_script(_PUT_CONTENT)
        self.usage = Usage(client, keys)

    async def put(
        self, entry: ContentEntry, *, owner: str = "", asset: str = "", quota: int = 0
    ) -> PutResult:
        """Index content with its owner and asset name, all or nothing; idempotent.

        A second put of the same content keeps its first creation time and adds the owner.
        If ``asset`` already names other content nothing is written (``name_taken_by`` says
        which); nor if ``owner`` does not own it yet and holding it would take their usage past
        ``quota`` bytes (0: no quota; ``used`` says what they hold)."""
        keys = [
            self._keys.content(entry.content_id),
            self._keys.cid(entry.cid),
            self._keys.contents,
            self._keys.content_owners(entry.content_id),
            self._keys.assets,
            self._keys.media,
            *(self._keys.media_of_kind(kind) for kind in MEDIA_KINDS),
            *([self._keys.usage(owner)] if owner else []),
        ]
        created = repr(entry.created)
        args = [entry.content_id, entry.cid, str(entry.size), entry.media_type, created, owner, asset]
        args += [kind_of(entry.media_type) or "", str(quota), *MEDIA_KINDS]
        with redis_errors():
            existed, taken_by, used = await self._put(keys=keys, args=args)
        return PutResult(
            existed=bool(existed),
            name_taken_by=str(taken_by) if taken_by else None,
            used=int(used) if used is not None else None,
        )

    async def get(self, content_id: str) -> ContentEntry | None:
        key = self._keys.content(content_id)
        with redis_errors():
            fields = await self._redis.hgetall(key)
        return ContentEntry.from_hash(content_id, fields) if fields else None

    async def get_many(self, content_ids: list[str]) -> list[ContentEntry]:
        """Entries for several ids in one round trip, in order; ids not indexed are skipped."""
        rows = await hashes(self._redis, [self._keys.content(content_id) for content_id in content_ids])
        return [ContentEntry.from_hash(cid, row) for cid, row in zip(content_ids, rows, strict=True) if row]

    async def assets(self) -> dict[str, str]:
        """Every asset name and the content id it stands for."""
        with redis_errors():
            return {
                str(name): str(content_id)
                for name, content_id in (await self._redis.hgetall(self._keys.assets)).items()
            }

    async def names_by_content(self) -> dict[str, list[str]]:
        """Each named content id and its names, sorted (the other way round from
        :meth:`assets`): asset names, then the output names of runs that made it."""
        names: dict[str, list[str]] = {}
        for name, content_id in sorted((await self.assets()).items()):
            names.setdefault(content_id, []).append(name)
        with redis_errors():
            outputs = await self._redis.hgetall(self._keys.output_names)
        for name, content_id in sorted((str(key), str(value)) for key, value in outputs.items()):
            if name not in names.get(content_id, []):
                names.setdefault(content_id, []).append(name)
        return names

    async def name_output(self, name: str, content_id: str) -> None:
        """Make ``name`` stand for a run's output: the newest run of that output name wins."""
        with redis_errors():
            await self._redis.hset(self._keys.output_names, name, content_id)

    async def output_named(self, name: str) -> str | None:
        """The content id of the newest run output named ``name``."""
        with redis_errors():
            value = await self._redis.hget(self._keys.output_names, name)
        return str(value) if value is not None else None

    async def asset(self, name: str) -> str | None:
        """The content id an asset name stands for."""
        with redis_errors():
            value = await self._redis.hget(self._keys.assets, name)
        return str(value) if value is not None else None

    async def content_id_for_cid(self, cid: str) -> str | None:
        with redis_errors():
            value = await self._redis.get(self._keys.cid(cid))
        return str(value) if value is not None else None

    async def content_ids_for_cids(self, cids: list[str]) -> list[str | None]:
        """:meth:`content_id_for_cid` of several CIDs in one round trip, in order."""
        if not cids:
            return []
        with redis_errors():
            found = await self._redis.mget([self._keys.cid(cid) for cid in cids])
        return [str(value) if value is not None else None for value in found]

    async def newest(self, offset: int, limit: int) -> tuple[list[str], int]:
        """A page of content ids, newest first, and the total count."""
        with redis_errors():
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zrevrange(self._keys.contents, offset, offset + limit - 1)
                pipe.zcard(self._keys.contents)
                ids, total = await pipe.execute()
        return list(ids), int(total)

    async def newest_media(
        self, kind: str | None, offset: int, limit: int, *, intermediates: bool = True
    ) -> tuple[list[str], int]:
        """A page of the ids of images, videos and audio (None) or of one of those kinds,
        newest first, and the total count. Without ``intermediates``, only the library: content
        someone uploaded or imported (it has an owner) or a run's output; a step's intermediate
        output has neither. That reads every id's owners and runs (one round trip; a few
        milliseconds for thousands)."""
        key = self._keys.media if kind is None else self._keys.media_of_kind(kind)
        if not intermediates:
            library = await self.in_library(await self._all_newest(key))
            return library[offset : offset + limit], len(library)
        with redis_errors():
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zrevrange(key, offset, offset + limit - 1)
                pipe.zcard(key)
                ids, total = await pipe.execute()
        return list(ids), int(total)

    async def _all_newest(self, key: str) -> list[str]:
        with redis_errors():
            return [str(content_id) for content_id in await self._redis.zrevrange(key, 0, -1)]

    async def in_library(self, content_ids: list[str]) -> list[str]:
        """The ids, in order, of content with an owner or a run."""
        with redis_errors():
            async with self._redis.pipeline(transaction=False) as pipe:
                for content_id in content_ids:
                    pipe.exists(self._keys.content_owners(content_id), self._keys.content_runs(content_id))
                held = await pipe.execute()
        return [content_id for content_id, count in zip(content_ids, held, strict=True) if count]

    async def add_owner(self, content_id: str, owner: str) -> None:
        """Add an owner, who holds the content from now (their usage grows by its size)."""
        entry = await self.get(content_id)
        await self.usage.add_owners(content_id, entry.size if entry else 0, [owner])

    async def owners(self, content_id: str) -> set[str]:
        with redis_errors():
            return {str(owner) for owner in await self._redis.smembers(self._keys.content_owners(content_id))}

    async def add_run(self, content_id: str, run_id: str) -> None:
        with redis_errors():
            await self._redis.sadd(self._keys.content_runs(content_id), run_id)

    async def remove_run(self, content_id: str, run_id: str) -> None:
        with redis_errors():
            await self._redis.srem(self._keys.content_runs(content_id), run_id)

    async def remove_owner(self, content_id: str, owner: str | None) -> set[str]:
        """Drop one owner (None: every owner), lowering their usage; the owners left. Under the
        content lock (``ContentStore.delete``), so no owner is added meanwhile."""
        owners = [owner] if owner is not None else sorted(await self.owners(content_id))
        return await self.usage.remove_owners(content_id, owners) if owners else set()

    async def media_info(self, content_id: str) -> str | None:
        """What probing the content found (JSON), if it was probed."""
        with redis_errors():
            found = await self._redis.get(self._keys.content_media(content_id))
        return found.decode() if isinstance(found, bytes) else found

    async def put_media_info(self, content_id: str, report: str) -> None:
        with redis_errors():
            await self._redis.set(self._keys.content_media(content_id), report)

    async def remove(self, entry: ContentEntry) -> list[str]:
        """Forget content entirely: its entry, CID mapping, listings, owners, runs and asset
        names; the asset names it had. Owners left (content lost to a repository refill) release
        their holds first, so their usage drops with it."""
        await self.remove_owner(entry.content_id, None)
        with redis_errors():
            names = (await self.names_by_content()).get(entry.content_id, [])
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(
                    self._keys.content(entry.content_id),
                    self._keys.content_owners(entry.content_id),
                    self._keys.content_runs(entry.content_id),
                    self._keys.content_media(entry.content_id),
                )
                if await self.content_id_for_cid(entry.cid) == entry.content_id:
                    pipe.delete(self._keys.cid(entry.cid))
                pipe.zrem(self._keys.contents, entry.content_id)
                for listing in (self._keys.media, *map(self._keys.media_of_kind, MEDIA_KINDS)):
                    pipe.zrem(listing, entry.content_id)
                if names:
                    pipe.hdel(self._keys.assets, *names)
                await pipe.execute()
        return names

    async def runs(self, content_id: str) -> set[str]:
        with redis_errors():
            return {str(run) for run in await self._redis.smembers(self._keys.content_runs(content_id))}

    async def restore(self, held: list[HeldContent]) -> int:
        """Add entries Redis lacks, with their owners and runs (a field present is never
        overwritten; owners and runs are added to); how many entries were new."""
        with redis_errors():
            async with self._redis.pipeline(transaction=False) as pipe:
                for item in held:
                    pipe.zadd(self._keys.contents, {item.entry.content_id: item.entry.created}, nx=True)
                added = sum(int(new) for new in await pipe.execute())
            async with self._redis.pipeline(transaction=False) as pipe:
                for item in held:
                    await self._restore_one(pipe, item)
                await pipe.execute()
        return added

    async def _restore_one(self, pipe: Any, item: HeldContent) -> None:
        entry = item.entry
        key = self._keys.content(entry.content_id)
        for name, value in {**_fields(entry, "content_id"), "created": repr(entry.created)}.items():
            pipe.hsetnx(key, name, value)
        pipe.setnx(self._keys.cid(entry.cid), entry.content_id)
        if item.owners:  # each restored owner holds it again: their usage is rebuilt with it
            await self.usage.add_owners(entry.content_id, entry.size, item.owners, client=pipe)
        if item.runs:
            pipe.sadd(self._keys.content_runs(entry.content_id), *item.runs)
        kind = kind_of(entry.media_type)
        if kind is not None:
            pipe.zadd(self._keys.media, {entry.content_id: entry.created}, nx=True)
            pipe.zadd(self._keys.media_of_kind(kind), {entry.content_id: entry.created}, nx=True)

    async def restore_assets(self, assets: dict[str, str]) -> None:
        """Add asset names Redis lacks (a name present keeps what it names)."""
        with redis_errors():
            async with self._redis.pipeline(transaction=False) as pipe:
                for name, content_id in assets.items():
                    pipe.hsetnx(self._keys.assets, name, content_id)
                await pipe.execute()

    async def held(self, listed: list[tuple[str, float]]) -> list[HeldContent]:
        """The entries, owners and runs of ``listed`` content (from :meth:`listed`) still indexed."""
        with redis_errors():
            async with self._redis.pipeline(transaction=False) as pipe:
                for content_id, _ in listed:
                    pipe.hgetall(self._keys.content(content_id))
                    pipe.smembers(self._keys.content_owners(content_id))
                    pipe.smembers(self._keys.content_runs(content_id))
                rows = await pipe.execute()
        found = []
        for index, (content_id, _) in enumerate(listed):
            fields, owners, runs = rows[3 * index : 3 * index + 3]
            if fields:
                entry = ContentEntry.from_hash(content_id, fields)
                found.append(HeldContent(entry, sorted(map(str, owners)), sorted(map(str, runs))))
        return found

    async def listed(self) -> list[tuple[str, float]]:
        """Every content id with its creation time (start-up and publishing work: it may be long)."""
        return await scored_members(self._redis, self._keys.contents)


class StepIndex:
    """``step:{cache_id}`` hashes: the results any node may reuse instead of recomputing."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self._redis = client
        self._keys = keys
        self._put_if_absent = client.register_script(_PUT_STEP_IF_ABSENT)
        self._touch = client.register_script(_TOUCH)

    async def get(self, cache_id: str) -> StepEntry | None:
        key = self._keys.step(cache_id)
        with redis_errors():
            fields = await self._redis.hgetall(key)
        return StepEntry.from_hash(cache_id, fields) if fields else None

    async def get_many(self, cache_ids: list[str]) -> list[StepEntry]:
        """Entries for several cache ids in one round trip, in order; ids not recorded are skipped."""
        rows = await hashes(self._redis, [self._keys.step(cache_id) for cache_id in cache_ids])
        return [
            StepEntry.from_hash(cache_id, row) for cache_id, row in zip(cache_ids, rows, strict=True) if row
        ]

    async def forget(self, entry: StepEntry) -> None:
        """Drop a recorded step and its receipt's bytes (its output is gone): the next run that
        needs it computes it."""
        with redis_errors():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(self._keys.step(entry.cache_id))
                if entry.receipt_cid:
                    pipe.delete(self._keys.receipt(entry.receipt_cid))
                pipe.zrem(self._keys.steps, entry.cache_id)
                await pipe.execute()

    async def touch(self, cache_id: str) -> None:
        """A run reused the step's output now, by Redis's clock (the garbage collector evicts
        the least recently used first, and nothing used since it looked: ``node.sync.eviction``)."""
        with redis_errors():
            await self._touch(keys=[self._keys.steps_used], args=[cache_id])

    async def put_if_absent(self, entry: StepEntry, receipt: bytes = b"") -> bool:
        """Record a computed step (and its signed receipt's bytes, kept under the receipt's
        CID); False (and nothing written) if it was already recorded."""
        keys, args = step_write(self._keys, entry, receipt)
        with redis_errors():
            return bool(await self._put_if_absent(keys=keys, args=args))

    async def restore(self, entries: list[StepEntry]) -> int:
        """Record the steps Redis lacks (without receipts' bytes); how many were new."""
        with redis_errors():
            async with self._redis.pipeline(transaction=False) as pipe:
                for entry in entries:
                    keys, args = step_write(self._keys, entry, b"")
                    await self._put_if_absent(keys=keys, args=args, client=pipe)
                return sum(int(done) for done in await pipe.execute())

    async def listed(self) -> list[tuple[str, float]]:
        """Every cache id with when it was recorded (start-up and publishing work: it may be long)."""
        return await scored_members(self._redis, self._keys.steps)

    async def receipts(self, cids: list[str]) -> list[bytes | None]:
        """The signed bytes of step receipts, by CID, in order (None: not recorded here)."""
        if not cids:
            return []
        with redis_errors():
            found = await self._redis.mget([self._keys.receipt(cid) for cid in cids])
        return [value.encode() if isinstance(value, str) else value for value in found]


def step_write(keys: Keys, entry: StepEntry, receipt: bytes) -> tuple[list[str], list[str | bytes]]:
    """The keys and arguments of a script writing a step entry and its receipt: keys [step,
    steps listing, receipt?], arguments [receipt, cache id, field, value, ...]."""
    names = [keys.step(entry.cache_id), keys.steps]
    if receipt:
        names.append(keys.receipt(entry.receipt_cid))
    flat: list[str | bytes] = [part for pair in step_fields(entry).items() for part in pair]
    return names, [receipt, entry.cache_id, *flat]
