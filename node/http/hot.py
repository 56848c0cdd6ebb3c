"""Short-lived memory for the API's hottest reads (cachetools).

Content is immutable and a finished run no longer changes, so answers about them can be kept:

- content entries by the ref a client used, for ``ENTRY_TTL_S``; the bytes of small content
  (up to ``SMALL_BYTES`` each, ``SMALL_TOTAL_BYTES`` in all) for as long as memory allows;
- the JSON of a finished run (completed, failed, cancelled) for ``RUN_TTL_S``.

A deletion on this node forgets at once; a deletion by another node sharing this Redis is seen
within the TTL (2 s). Nothing that can still change (a queued or running run) is kept.
"""

from __future__ import annotations

import hashlib

from aiohttp import web
from cachetools import LRUCache, TTLCache

from node.store.content import ContentStore
from node.store.errors import IntegrityError
from node.sync.index import ContentEntry

ENTRY_TTL_S = 2.0
RUN_TTL_S = 2.0
SMALL_BYTES = 64 * 1024
SMALL_TOTAL_BYTES = 64 * 1024 * 1024
RUNS_TOTAL_BYTES = 32 * 1024 * 1024
MAX_ITEMS = 16384
ITEM_OVERHEAD = 256  # bytes of key and bookkeeping per kept item, counted against the totals


class HotReads:
    """The caches of one application."""

    def __init__(self) -> None:
        self._entries: TTLCache[str, ContentEntry] = TTLCache(MAX_ITEMS, ENTRY_TTL_S)
        self._small: LRUCache[str, bytes] = LRUCache(SMALL_TOTAL_BYTES, getsizeof=_weight)
        self._runs: TTLCache[str, bytes] = TTLCache(RUNS_TOTAL_BYTES, RUN_TTL_S, getsizeof=_weight)

    async def entry(self, store: ContentStore, ref: str) -> ContentEntry:
        """``store.resolve(ref)``, remembered for a moment."""
        found = self._entries.get(ref)
        if found is None:
            found = await store.resolve(ref)
            self._entries[ref] = found
        return found

    async def small(self, store: ContentStore, entry: ContentEntry) -> bytes | None:
        """The whole bytes of small content (None for large content, which is streamed)."""
        if entry.size > SMALL_BYTES:
            return None
        data = self._small.get(entry.content_id)
        if data is None:
            data = await store.read_all(entry, SMALL_BYTES)
            # A daemon can end a stream early and call it success: keep only the right bytes.
            if len(data) != entry.size or hashlib.sha3_256(data).hexdigest() != entry.content_id:
                raise IntegrityError(f"IPFS returned other bytes than {entry.cid}", cid=entry.cid)
            self._small[entry.content_id] = data
        return data

    def forget_content(self, entry: ContentEntry) -> None:
        """Content was deleted here: no ref resolves to it from memory any more."""
        for ref in [ref for ref, known in self._entries.items() if known.content_id == entry.content_id]:
            self._entries.pop(ref, None)
        self._small.pop(entry.content_id, None)

    def run(self, run_id: str) -> bytes | None:
        return self._runs.get(run_id)

    def keep_run(self, run_id: str, body: bytes) -> None:
        """Keep the JSON of a finished run."""
        self._runs[run_id] = body

    def forget_run(self, run_id: str) -> None:
        self._runs.pop(run_id, None)


def _weight(data: bytes) -> int:
    return len(data) + ITEM_OVERHEAD


HOT = web.AppKey("hot_reads", HotReads)
