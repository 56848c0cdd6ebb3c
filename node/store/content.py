"""The content store: bytes into IPFS and back, known by SHA3-256 content id and CID.

An upload is all or nothing: bytes are added to IPFS unpinned while being hashed, counted and
sniffed; only once they arrived whole are they pinned and indexed, under a short per-content
lock so that a concurrent upload or deletion of the same bytes cannot interleave. A failure at
any point leaves no pin and no index entry that was not there before.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

import redis.asyncio as aioredis
from redis.asyncio.lock import Lock
from redis.exceptions import LockError

from node.errors import NodeError
from node.store.cid import normalize_ref
from node.store.errors import (
    AssetNameTaken,
    ContentBusy,
    ContentInUse,
    ContentNotFound,
    InvalidUpload,
    IpfsTimeout,
    IpfsUnavailable,
    NotOwner,
    QuotaExceeded,
    UploadStalled,
)
from node.store.gate import AddGate
from node.store.gone import Gone
from node.store.ipfs import Added, IpfsClient, file_chunks
from node.store.room import Room
from node.store.sniffing import SNIFF_BYTES, sniff_media_type
from node.sync.connection import redis_errors
from node.sync.index import ContentEntry, ContentIndex, PutResult
from node.sync.keys import Keys

log = logging.getLogger(__name__)
Consent = Callable[[], Awaitable[bool]]

COMMIT_LOCK_TIMEOUT_S = 120.0
CLIENT_IDLE_TIMEOUT_S = 120.0  # an upload that sends nothing for this long is abandoned
STALL_CHECK_INTERVAL_S = 1.0


@dataclass(frozen=True)
class Deleted:
    """The result of a delete: whether the bytes went, and how many owners keep them."""

    entry: ContentEntry
    unpinned: bool
    owners_left: int


@dataclass(frozen=True)
class Stored:
    """The result of a put: the indexed entry and whether the node held it already."""

    entry: ContentEntry
    existed: bool


class _Meter:
    """Hashes, counts and sniffs bytes as they stream past, and enforces the size limit."""

    def __init__(self, chunks: AsyncIterable[bytes], room: Room, idle_timeout_s: float) -> None:
        self._chunks = chunks
        self._room = room
        self._idle_timeout_s = idle_timeout_s
        self.handed_over_at: float | None = None  # while IPFS holds a chunk: since when
        self._hasher = hashlib.sha3_256()
        self._head = b""
        self.size = 0
        self.failure: BaseException | None = None  # what broke the stream, if it broke

    async def stream(self) -> AsyncIterator[bytes]:
        source = aiter(self._chunks)
        try:
            while (chunk := await self._next(source)) is not None:
                self.size += len(chunk)
                if self.size > self._room.limit:
                    raise self._room.too_large()
                if len(self._head) < SNIFF_BYTES:
                    self._head += chunk[: SNIFF_BYTES - len(self._head)]
                await asyncio.to_thread(self._hasher.update, chunk)  # SHA3 releases the GIL
                self.handed_over_at = time.monotonic()
                yield chunk
                self.handed_over_at = None
        except Exception as exc:  # not cancellation: that is the consumer's doing, not the source's
            self.failure = exc
            raise

    async def _next(self, source: AsyncIterator[bytes]) -> bytes | None:
        try:
            return await asyncio.wait_for(anext(source), self._idle_timeout_s)
        except StopAsyncIteration:
            return None
        except TimeoutError:
            raise UploadStalled(f"the upload sent nothing for {self._idle_timeout_s:.0f} s") from None

    @property
    def content_id(self) -> str:
        return self._hasher.hexdigest()

    def media_type(self) -> str:
        return sniff_media_type(self._head)


class ContentStore:
    """Puts byte streams into IPFS and the content index; resolves and opens them again."""

    def __init__(
        self,
        ipfs: IpfsClient,
        index: ContentIndex,
        client: aioredis.Redis,
        keys: Keys,
        *,
        gone: Gone,
    ) -> None:
        self.ipfs = ipfs
        self.index = index
        self._redis = client
        self._keys = keys
        self._gone = gone  # what else goes with content this store forgets
        self.gate = AddGate()  # adds wait while the garbage collector runs repo/gc, and it for them

    async def put(
        self, chunks: AsyncIterable[bytes], *, max_size: int, owner: str = "", asset: str = "", quota: int = 0
    ) -> Stored:
        """Stream ``chunks`` into IPFS, then pin and index them; all or nothing. With a ``quota``
        (bytes ``owner`` may hold in all), QuotaExceeded as soon as the bytes would pass it."""
        if asset:
            await self.check_asset_free(asset, owner)
        room = await self.room(max_size, owner, quota)
        async with self.gate.adding():
            return await self.commit(await self.ingest(chunks, room), owner=owner, asset=asset, quota=quota)

    async def put_bytes(self, data: bytes, *, max_size: int, owner: str = "", quota: int = 0) -> Stored:
        """Store a small item already in memory (a signed record, a recipe)."""

        async def chunks() -> AsyncIterator[bytes]:
            yield data

        return await self.put(chunks(), max_size=max_size, owner=owner, quota=quota)

    async def room(self, max_size: int, owner: str = "", quota: int = 0) -> Room:
        """How much a put of ``owner``'s may store now (their usage read once, if they have a quota)."""
        used = await self.index.usage.stored_bytes(owner) if owner and quota else 0
        return Room(max_size, quota, used)

    async def put_file(self, path: Path, *, owner: str = "", media_type: str = "") -> Stored:
        """Store a local file (a step's output), read in chunks off the event loop.

        ``media_type``, when given, replaces the sniffed one: the step that made the file knows
        it exactly (an audio-only Matroska file sniffs as video)."""
        async with self.gate.adding():
            handle = path.open("rb")  # opened here, not in a thread: see LocalCache._fetch
            try:
                entry = await self.ingest(file_chunks(handle), Room(2**62))
            finally:
                handle.close()  # a read-only file: closing is one syscall, and an await here
                # could be skipped by a task destroyed at shutdown, leaking the descriptor
            entry = replace(entry, media_type=media_type or entry.media_type)
            return await self.commit(entry, owner=owner, undo_pin=False)

    async def add_records(self, records: list[bytes]) -> list[ContentEntry]:
        """Store small records this node made (signed JSON): added pinned in one daemon call,
        then indexed. No pin is undone: a record that fails to index stays pinned, harmless,
        and the same bytes are added again (the same CID) by the next try."""
        added = await self.ipfs.add_many(records, pin=True)
        entries = []
        for data, item in zip(records, added, strict=True):
            entry = ContentEntry(
                hashlib.sha3_256(data).hexdigest(), item.cid, len(data), sniff_media_type(data)
            )
            await self.index.put(entry)
            entries.append(entry)
        return entries

    async def put_handle(
        self, handle: BinaryIO, *, max_size: int, owner: str = "", asset: str = "", quota: int = 0
    ) -> Stored:
        """Store what an open binary file holds, read in chunks in threads, up to ``max_size``
        (and ``owner``'s ``quota``: a file known to be past it is refused before it is read)."""
        (await self.room(max_size, owner, quota)).check(os.fstat(handle.fileno()).st_size)
        return await self.put(file_chunks(handle), max_size=max_size, owner=owner, asset=asset, quota=quota)

    async def ingest(self, chunks: AsyncIterable[bytes], room: Room) -> ContentEntry:
        """Stream ``chunks`` into IPFS unpinned (garbage until committed), refused past the
        ``room``'s limit; the entry they make."""
        meter = _Meter(chunks, room, CLIENT_IDLE_TIMEOUT_S)
        try:
            added = await self._add_watched(meter)
        except Exception as exc:
            # The reader's own failure (too large, client gone) explains more than the broken
            # request to the daemon that it caused.
            if meter.failure is not None and meter.failure is not exc:
                raise meter.failure from exc
            raise
        if meter.size == 0:
            raise InvalidUpload("the uploaded file is empty", field="file")
        return ContentEntry(meter.content_id, added.cid, meter.size, meter.media_type(), time.time())

    async def _add_watched(self, meter: _Meter) -> Added:
        """``ipfs.add`` of the meter's stream, abandoned if the daemon stops taking bytes.

        aiohttp's read deadline does not cover writing a request body: a daemon that stops
        reading would hold the upload (and its client) forever."""
        adding = asyncio.ensure_future(self.ipfs.add(meter.stream(), pin=False))
        try:
            while True:
                done, _ = await asyncio.wait({adding}, timeout=STALL_CHECK_INTERVAL_S)
                if done:
                    return adding.result()
                since = meter.handed_over_at
                if since is not None and time.monotonic() - since > self.ipfs.timeout_s:
                    raise IpfsTimeout(
                        f"IPFS daemon took no upload bytes for {self.ipfs.timeout_s:.0f} s", command="add"
                    )
        finally:
            if not adding.done():
                adding.cancel()
                await asyncio.gather(adding, return_exceptions=True)

    async def check_ready(self) -> None:
        """Raise RedisUnavailable now rather than after a long upload has streamed in."""
        with redis_errors():
            await self._redis.ping()

    async def check_asset_free(self, asset: str, owner: str = "") -> None:
        """Refuse early (409), before the bytes stream in, an asset name that is taken by
        content ``owner`` does not own. A name on ``owner``'s own content may be that content
        uploaded again (200, one entry): commit decides, atomically, once the bytes are known."""
        content_id = await self.index.asset(asset)
        if content_id is not None and not (owner and owner in await self.index.owners(content_id)):
            raise AssetNameTaken(f"asset name {asset!r} is taken", field="name", name=asset)

    async def commit(
        self, entry: ContentEntry, *, owner: str = "", asset: str = "", undo_pin: bool = True, quota: int = 0
    ) -> Stored:
        """Pin and index ingested content with its owner and asset name; all or nothing. With a
        ``quota``, QuotaExceeded (nothing kept) if ``owner`` would hold more than it in all.

        ``undo_pin=False`` (a step's output) skips asking the daemon whether the bytes were
        pinned before and keeps the pin if indexing fails: a kept pin loses nothing, and it
        saves one daemon call per step."""
        async with self.content_lock(entry.content_id):
            # Pins are not counted: roll back only a pin this call made, never one that was
            # there before (another node on the same daemon, an earlier upload).
            keep_pin = not undo_pin or bool(await self.ipfs.pin_ls(entry.cid))
            try:
                await self._pin_added(entry)
                result = await self.index.put(entry, owner=owner, asset=asset, quota=quota)
            except BaseException:
                if not keep_pin and await self._safe_to_unpin(entry):
                    await self.ipfs.pin_rm(entry.cid)
                raise
            refusal = _refusal(result, entry, asset, quota)
            if refusal is not None:
                if not keep_pin and not result.existed:
                    await self.ipfs.pin_rm(entry.cid)
                raise refusal
        stored = await self.index.get(entry.content_id)
        log.info(
            "stored %s cid=%s size=%d existed=%s", entry.content_id, entry.cid, entry.size, result.existed
        )
        return Stored(stored or entry, result.existed)

    async def _pin_added(self, entry: ContentEntry) -> None:
        """Pin bytes just added. Their blocks are gone only if a garbage collection ran on the
        daemon in between (another node's, on a daemon nodes share: this node's own waits for
        its adds): an outage, so the upload is sent again or the step computed again; never the
        run's own failure."""
        try:
            await self.ipfs.pin_add(entry.cid)
        except ContentNotFound as exc:
            raise IpfsUnavailable(
                f"the IPFS daemon collected {entry.cid} before it was pinned (a garbage collection on a "
                "shared daemon?): try again",
                command="pin/add",
            ) from exc

    async def _safe_to_unpin(self, entry: ContentEntry) -> bool:
        """After a failed index write: unpin only content the index does not (or may not) hold."""
        try:
            return await self.index.get(entry.content_id) is None
        except Exception:  # Redis is down: we cannot tell, so keep the pin (GC-safe, no loss)
            return False

    def content_lock(self, content_id: str) -> AbstractAsyncContextManager[Lock]:
        """The per-content lock that pin, index and unpin of the same bytes all take."""
        name = self._keys.content_lock(content_id)
        lock = self._redis.lock(name, timeout=COMMIT_LOCK_TIMEOUT_S, blocking_timeout=COMMIT_LOCK_TIMEOUT_S)
        return _RedisLock(lock)

    async def check_deletable(self, content_id: str, owner: str, *, admin: bool = False) -> ContentEntry:
        """The entry, if ``owner`` may delete it now: 404 unknown, 403 not an owner (nor an
        admin), 409 while a run uses it. ``delete`` checks again under the content lock."""
        entry = await self.index.get(content_id)
        if entry is None:
            raise ContentNotFound(f"no content {content_id} on this node", ref=content_id)
        if not admin and owner not in await self.index.owners(content_id):
            raise NotOwner("only an owner of the content or an admin may delete it", ref=content_id)
        runs = await self.index.runs(content_id)
        if runs:
            listed = ", ".join(sorted(runs)[:5])
            raise ContentInUse(
                f"content is used by {len(runs)} run(s) ({listed}); delete those first", runs=sorted(runs)
            )
        return entry

    async def delete(self, content_id: str, owner: str, *, admin: bool = False) -> Deleted:
        """A user's delete: drops their ownership; the bytes are unpinned and forgotten only when
        no owner is left. Refused (409) while a run uses the content; under the content lock, so
        a commit of the same bytes cannot interleave."""
        async with self.content_lock(content_id):
            entry = await self.check_deletable(content_id, owner, admin=admin)
            left = await self.index.remove_owner(content_id, None if admin else owner)
            if left:
                return Deleted(entry, unpinned=False, owners_left=len(left))
            await self._forget(entry)
        log.info("deleted %s cid=%s", content_id, entry.cid)
        return Deleted(entry, unpinned=True, owners_left=0)

    async def discard(self, entry: ContentEntry, *, consent: Consent | None = None) -> bool:
        """Forget and unpin content nobody owns and no run holds (a fenced step's output that
        differs from the recorded one, an intermediate the garbage collector evicts); whether it
        went. ``consent``, asked under the content lock once those checks pass, may still keep it."""
        async with self.content_lock(entry.content_id):
            if await self.index.owners(entry.content_id) or await self.index.runs(entry.content_id):
                return False
            if consent is not None and not await consent():
                return False
            await self._forget(entry)
        log.info("discarded %s cid=%s", entry.content_id, entry.cid)
        return True

    async def _forget(self, entry: ContentEntry) -> None:
        """Unindex and unpin content (under its lock); its local traces go even when unpinning
        fails, since nothing may serve what the index no longer names."""
        await self.index.remove(entry)
        try:
            await self.ipfs.pin_rm(entry.cid)
        finally:
            await self._gone.forget(entry)

    async def resolve(self, ref: str) -> ContentEntry:
        """The entry for a CID (any form) or SHA3-256 hex this node holds; 404 otherwise."""
        kind, value = normalize_ref(ref)
        content_id = value if kind == "content_id" else await self.index.content_id_for_cid(value)
        entry = await self.index.get(content_id) if content_id else None
        if entry is None:
            raise ContentNotFound(f"no content {ref!r} on this node", ref=ref)
        return entry

    def open(
        self, entry: ContentEntry, offset: int = 0, length: int | None = None
    ) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """The bytes of indexed content (from ``offset``, at most ``length``), streamed.

        The index vouches that the cluster holds them, so the daemon fetches what it lacks from
        the daemons it is peered with (the cluster's and trusted peers'), within the IPFS
        deadline. A ref nobody indexes never gets here: ``resolve`` answers 404 at once."""
        return self.ipfs.cat(entry.cid, offset, length, offline=False)

    async def read_all(self, entry: ContentEntry, max_bytes: int) -> bytes:
        """The whole of small indexed content (a record, a recipe), fetched as ``open`` does."""
        return await self.ipfs.cat_all(entry.cid, max_bytes, offline=False)

    async def read_json(self, entry: ContentEntry, max_bytes: int) -> Any:
        """Indexed JSON content (an analysis or expansion record), parsed off the event loop;
        ValueError if it is not JSON."""
        return await asyncio.to_thread(json.loads, await self.read_all(entry, max_bytes))


def _refusal(result: PutResult, entry: ContentEntry, asset: str, quota: int) -> NodeError | None:
    """Why the index refused a put (nothing written), if it did."""
    if result.name_taken_by is not None:
        return AssetNameTaken(
            f"asset name {asset!r} is taken by other content: choose another name", field="name", name=asset
        )
    if result.used is not None:
        return QuotaExceeded.over(result.used, quota, entry.size)
    return None


class _RedisLock:
    """redis-py's lock as an async context manager whose failures are RedisUnavailable."""

    def __init__(self, lock: Lock) -> None:
        self._lock = lock

    async def __aenter__(self) -> Lock:
        with redis_errors():
            acquired = await self._lock.acquire()
        if not acquired:
            raise ContentBusy(
                f"content is busy: {self._lock.name!r} stayed locked", lock=str(self._lock.name)
            )
        return self._lock

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            with redis_errors():
                await self._lock.release()
        except LockError as exc:  # the lease ran out first; the work under it is already done
            log.warning("lock %s expired before release: %s", self._lock.name, exc)
