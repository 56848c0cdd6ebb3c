"""Thumbnails of image, video and audio content, made once and kept as files.

``<data>/thumbnails/ab/cd/<content_id>.webp``, sharded like the local cache. Content never
changes, so neither does its thumbnail: it is made the first time it is asked for, from the
content's file in the local cache, and served from disk after that. Making one runs
``node.media.thumbnails`` in a process of its own under a deadline (killed with what it started
when time is up), at most ``at_once`` at a time, and once however many requests ask for the same
thumbnail together. A thumbnail appears only whole: it is made in a private directory and renamed
into place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections import OrderedDict
from collections.abc import AsyncIterator
from pathlib import Path

from node.media.kinds import kind_of
from node.media.thumbnails import FAILED, TIMED_OUT
from node.services import die_with_parent
from node.store.errors import NoThumbnail, ThumbnailTimeout
from node.store.local_cache import LocalCache, sharded
from node.sync.index import ContentEntry

log = logging.getLogger(__name__)
AT_ONCE = 2  # thumbnails made at the same time
TIMEOUT_S = 60.0  # to make one, fetching the content aside
GRACE_S = 5.0  # beyond the maker's own deadline, before it is killed
FAILURES_KEPT = 1024  # content whose thumbnail cannot be made, remembered so as not to try again


class Thumbnails:
    """The thumbnails under ``root`` of content materialized through ``cache``."""

    def __init__(
        self,
        root: Path,
        cache: LocalCache,
        *,
        at_once: int = AT_ONCE,
        timeout_s: float = TIMEOUT_S,
        memory_limit: int | None = None,
    ) -> None:
        self.root = root
        self.memory_limit = memory_limit  # each maker's, as a step worker's (node.memory)
        self.maker_runs = 0  # thumbnails this object tried to make (the rest were on disk)
        self._cache = cache
        self._slots = asyncio.Semaphore(at_once)
        self._timeout_s = timeout_s
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}  # content id -> lock, its users
        self._failed: OrderedDict[str, str] = OrderedDict()  # content id -> why

    def path_for(self, content_id: str) -> Path:
        """Where the thumbnail of ``content_id`` is (or would be); validates the id."""
        return sharded(self.root, content_id, ".webp")

    async def get(self, entry: ContentEntry) -> Path:
        """The WebP thumbnail of the entry's content, made now if it was never made;
        NoThumbnail for content that is not media or cannot be read as such."""
        if kind_of(entry.media_type) is None:
            raise NoThumbnail(
                f"{entry.media_type} content has no thumbnail; only images, video and audio do",
                field="ref",
            )
        path = self.path_for(entry.content_id)
        if await asyncio.to_thread(path.is_file):
            return path
        async with self._one_at_a_time(entry.content_id):
            if await asyncio.to_thread(path.is_file):  # made while this request waited
                return path
            if (why := self._failed.get(entry.content_id)) is not None:
                raise NoThumbnail(why, field="ref")
            source = await self._cache.materialize(entry)
            async with self._slots:
                await self._make(entry, source, path)
        return path

    async def forget(self, content_id: str) -> None:
        """Remove the thumbnail of content deleted here."""
        self._failed.pop(content_id, None)
        await asyncio.to_thread(self.path_for(content_id).unlink, missing_ok=True)

    @contextlib.asynccontextmanager
    async def _one_at_a_time(self, content_id: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(content_id, (asyncio.Lock(), 0))
        self._locks[content_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[content_id]
            if users > 1:
                self._locks[content_id] = (lock, users - 1)
            else:
                del self._locks[content_id]

    async def _make(self, entry: ContentEntry, source: Path, path: Path) -> None:
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        work = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix=".making-", dir=self.root))
        try:
            made = work / "thumbnail.webp"
            await self._run_maker(entry, source, made)
            await asyncio.to_thread(os.replace, made, path)
        finally:
            await asyncio.to_thread(shutil.rmtree, work, ignore_errors=True)
        log.info("thumbnail made content_id=%s media_type=%s", entry.content_id, entry.media_type)

    async def _run_maker(self, entry: ContentEntry, source: Path, target: Path) -> None:
        self.maker_runs += 1
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "node.media.thumbnails",
            str(source),
            str(target),
            entry.media_type,
            str(self._timeout_s),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group: killed with the ffmpeg it starts
            preexec_fn=die_with_parent(os.getpid(), self.memory_limit),
        )
        too_long = ThumbnailTimeout(
            f"the thumbnail took longer than {self._timeout_s:g} s to make", content_id=entry.content_id
        )
        try:
            _, stderr = await asyncio.wait_for(process.communicate(), self._timeout_s + GRACE_S)
        except TimeoutError:
            raise too_long from None
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        if process.returncode == TIMED_OUT:
            raise too_long
        if process.returncode != 0:
            self._failed_with(entry.content_id, process.returncode, stderr)

    def _failed_with(self, content_id: str, exit_code: int | None, stderr: bytes) -> None:
        complaint = stderr.decode("utf-8", "replace").strip().splitlines()
        if exit_code == FAILED:  # what the content is: remembered, not tried again
            why = f"no thumbnail: {complaint[-1] if complaint else 'the content cannot be read'}"
            self._remember_failure(content_id, why)
            raise NoThumbnail(why, field="ref")
        tail = " | ".join(complaint[-3:])
        log.warning("thumbnail maker failed content_id=%s exit=%s: %s", content_id, exit_code, tail)
        raise NoThumbnail(f"no thumbnail: its maker failed (exit {exit_code})", field="ref")

    def _remember_failure(self, content_id: str, why: str) -> None:
        self._failed[content_id] = why
        while len(self._failed) > FAILURES_KEPT:
            self._failed.popitem(last=False)
