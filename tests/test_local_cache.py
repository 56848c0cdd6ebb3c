"""The local working cache: sharded, atomic, verified materialization from IPFS."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from node.config import Settings
from node.store.errors import IntegrityError
from node.store.ipfs import IpfsClient
from node.store.local_cache import LocalCache
from node.sync.errors import InvalidId
from node.sync.index import ContentEntry


@pytest.fixture
async def ipfs(settings: Settings) -> AsyncIterator[IpfsClient]:
    assert settings.ipfs_api is not None
    async with aiohttp.ClientSession() as session:
        yield IpfsClient(settings.ipfs_api, session)


async def _stored(ipfs: IpfsClient, data: bytes) -> ContentEntry:
    async def chunks() -> AsyncIterator[bytes]:
        yield data

    added = await ipfs.add(chunks(), pin=True)
    return ContentEntry(hashlib.sha3_256(data).hexdigest(), added.cid, len(data), "application/octet-stream")


def _files(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file())


async def test_materialize_writes_verified_bytes_at_sharded_path(ipfs: IpfsClient, tmp_path: Path) -> None:
    """Content lands at cache/ab/cd/<content id> with exactly its bytes, nothing else beside it."""
    data = os.urandom(700_000)
    entry = await _stored(ipfs, data)
    cache = LocalCache(tmp_path / "cache", ipfs)
    path = await cache.materialize(entry)
    cid = entry.content_id
    assert path == tmp_path / "cache" / cid[:2] / cid[2:4] / cid
    assert path.read_bytes() == data
    assert _files(tmp_path / "cache") == [path]
    assert cache.has(cid)


async def test_materialize_reuses_what_is_there(ipfs: IpfsClient, tmp_path: Path) -> None:
    """A second materialization returns the same file without rewriting it."""
    entry = await _stored(ipfs, os.urandom(1000))
    cache = LocalCache(tmp_path / "cache", ipfs)
    path = await cache.materialize(entry)
    inode = path.stat().st_ino  # a rewrite (tmp file + rename) would give a new inode
    assert await cache.materialize(entry) == path
    assert path.stat().st_ino == inode


async def test_bytes_that_do_not_match_the_content_id_are_refused(ipfs: IpfsClient, tmp_path: Path) -> None:
    """If IPFS bytes do not hash to the content id, nothing is left in the cache and it says so."""
    entry = await _stored(ipfs, os.urandom(1000))
    lying = ContentEntry("f" * 64, entry.cid, entry.size, entry.media_type)
    cache = LocalCache(tmp_path / "cache", ipfs)
    with pytest.raises(IntegrityError, match="hash to"):
        await cache.materialize(lying)
    assert _files(tmp_path / "cache") == []


def test_paths_only_from_valid_content_ids(tmp_path: Path) -> None:
    """A path is never built from an id that could escape the cache root."""
    cache = LocalCache(tmp_path / "cache", None)  # type: ignore[arg-type]
    for bad in ("../../etc/passwd", "A" * 64, "a" * 63):
        with pytest.raises(InvalidId):
            cache.path_for(bad)
