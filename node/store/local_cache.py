"""The local working cache: content materialized as files for effects to read.

``<data>/cache/ab/cd/<content_id>``: sharded by content id, like dvc-objects. A file appears only
whole and verified: bytes stream from IPFS into a temporary file beside it while being hashed,
and are renamed into place only if they hash to the content id. Reading is idempotent; two
concurrent materializations of the same content each write their own temporary file and the
rename makes one of them win.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
from pathlib import Path
from typing import BinaryIO

from node.store.errors import IntegrityError
from node.store.ipfs import Added, IpfsClient, file_chunks
from node.sync.index import ContentEntry
from node.sync.keys import check_content_id

log = logging.getLogger(__name__)


def sharded(root: Path, content_id: str, suffix: str = "") -> Path:
    """``root/ab/cd/<content_id><suffix>``: the one layout of files named by content id
    (two levels of 256 folders, as dvc-objects shards); validates the id."""
    check_content_id(content_id)
    return root / content_id[:2] / content_id[2:4] / f"{content_id}{suffix}"


class LocalCache:
    """Materializes indexed content under ``root`` and finds what is already there."""

    def __init__(self, root: Path, ipfs: IpfsClient) -> None:
        self.root = root
        self._ipfs = ipfs

    def path_for(self, content_id: str) -> Path:
        """Where ``content_id`` lives (or would live) in the cache; validates the id."""
        return sharded(self.root, content_id)

    def has(self, content_id: str) -> bool:
        return self.path_for(content_id).is_file()

    async def materialize(self, entry: ContentEntry, *, offline: bool = True) -> Path:
        """A local file holding the entry's bytes, fetched from IPFS and verified if missing;
        from other daemons too unless ``offline`` (see ``IpfsClient.cat``)."""
        path = self.path_for(entry.content_id)
        if await asyncio.to_thread(path.is_file):
            return path
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        tmp_path = path.with_name(f".{entry.content_id}.{secrets.token_hex(6)}.tmp")
        try:
            digest = await self._fetch(entry.cid, tmp_path, offline)
            if digest != entry.content_id:
                raise IntegrityError(
                    f"IPFS returned bytes for {entry.cid} that hash to {digest}, not {entry.content_id}",
                    cid=entry.cid,
                    content_id=entry.content_id,
                )
            await asyncio.to_thread(os.replace, tmp_path, path)
        finally:
            await asyncio.to_thread(tmp_path.unlink, missing_ok=True)
        log.info("materialized %s at %s", entry.content_id, path)
        return path

    async def add_file(self, path: Path, *, pin: bool) -> Added:
        """Add a cached file to IPFS again: the fixed import settings give it the CID it had."""
        handle = path.open("rb")  # opened here, not in a thread: see _fetch
        try:
            return await self._ipfs.add(file_chunks(handle), pin=pin)
        finally:
            handle.close()  # a read-only file: closing is one syscall, and an await here
            # could be skipped by a task destroyed at shutdown, leaking the descriptor

    async def _fetch(self, cid: str, tmp_path: Path, offline: bool) -> str:
        hasher = hashlib.sha3_256()
        # Opened here, not in a thread: a cancellation landing while a thread opened it would
        # leak the file. Opening is one syscall; the writes go to threads.
        handle = tmp_path.open("wb")
        try:
            async with self._ipfs.cat(cid, offline=offline) as chunks:
                async for chunk in chunks:
                    await asyncio.to_thread(_write_and_hash, handle, hasher, chunk)
            await asyncio.to_thread(_flush, handle)
        finally:
            await asyncio.to_thread(handle.close)
        return hasher.hexdigest()


def _write_and_hash(handle: BinaryIO, hasher: hashlib._Hash, chunk: bytes) -> None:
    handle.write(chunk)
    hasher.update(chunk)


def _flush(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())
