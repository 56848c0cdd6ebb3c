"""The disk budget: garbage collection of intermediates, then of local cache files.

``ARTDAG_DISK_BUDGET`` bounds what the node's IPFS repository (Kubo's ``repo/stat``) and local
cache hold together. Every ``ARTDAG_GC_INTERVAL`` seconds, and when the admin asks
(``POST /storage/gc``), a node above it collects, in this order, until it is under:

1. **Intermediates, least recently used first**: media this node computed as a step's output
   that nobody owns (not an upload, an import or a recipe), no run holds (not a run's final
   output or input), no unfinished run's plan names (nor the steps its expansions added), and
   no trusted L2 has published. Records (receipts, provenance, plans, state, analyses and
   expansions: small JSON) are never collected. Each leaves the cluster's step index first,
   atomically, and only if no node claims it and no run was submitted since the collector
   looked (``node.sync.eviction``); then it is unindexed and unpinned under its content lock,
   and its local file and thumbnail go. A run that needs it again computes it again.
2. Kubo's ``repo/gc``, which removes the unpinned blocks (those, and blocks fetched from other
   daemons), while no add is in flight on this node (``node.store.gate``).
3. **Local cache files**, least recently used first (their bytes stay in IPFS), except those an
   unfinished run uses and those touched in the last minute.

The budget is soft: what must stay, stays, and a collection says how far above it still is.
Each collection is recorded in the activity stream (``garbage_collected``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from node.errors import NodeError, Unavailable
from node.executor.planner import EXPAND
from node.executor.scheduler import recorded_expansion
from node.media.kinds import kind_of
from node.metrics import Metrics
from node.store.content import ContentStore
from node.store.gate import QUIET_WAIT_S
from node.store.local_cache import LocalCache
from node.sync.activities import Activities
from node.sync.eviction import StepEviction
from node.sync.index import StepEntry, StepIndex
from node.sync.run_index import RunIndex
from node.timestamps import utc_now

log = logging.getLogger(__name__)

Published = Callable[[list[str]], Awaitable[set[str]]]
CACHE_GRACE_S = 60.0  # a cache file touched this recently may be about to be read by a worker
ROUNDS_MAX = 5  # looks again after runs were submitted meanwhile, before giving up for now
BATCH = 500  # step entries read per round trip
REPO_GC_PUT_OFF = "repo/gc put off: an add was in flight"


@dataclass(frozen=True)
class Usage:
    """What the node's disk holds now, in bytes, against its budget (0: none)."""

    repo: int
    cache: int
    budget: int

    @property
    def total(self) -> int:
        return self.repo + self.cache

    @property
    def excess(self) -> int:
        """How far above the budget (0 when under it, or when there is no budget)."""
        return max(0, self.total - self.budget) if self.budget else 0


@dataclass
class Collection:
    """One collection: what it found, what it removed, how long it took."""

    reason: str  # "budget" (periodic) or "requested" (the admin route)
    started: str
    before: Usage
    after: Usage | None = None
    seconds: float = 0.0
    evicted: list[dict[str, Any]] = field(default_factory=list)  # {cid, cache_ids, size}
    cache_files: int = 0
    kept: dict[str, int] = field(default_factory=dict)  # why candidates stayed -> how many

    @property
    def evicted_steps(self) -> int:
        return sum(len(item["cache_ids"]) for item in self.evicted)

    @property
    def reclaimed(self) -> int:
        return max(0, self.before.total - self.after.total) if self.after else 0

    def report(self) -> dict[str, Any]:
        """The collection as the admin route and the activity stream say it."""
        after = self.after or self.before
        return {
            "reason": self.reason,
            "started": self.started,
            "seconds": round(self.seconds, 3),
            "budget": self.before.budget,
            "before": {**asdict(self.before), "total": self.before.total},
            "after": {**asdict(after), "total": after.total},
            "reclaimed": self.reclaimed,
            "over_budget": after.excess,
            "evicted_steps": self.evicted_steps,
            "evicted": self.evicted,
            "cache_files_removed": self.cache_files,
            "kept": self.kept,
        }


@dataclass(frozen=True)
class _Candidate:
    content_id: str
    cid: str
    size: int
    cache_ids: list[str]
    last_used: float


class GarbageCollector:
    """Keeps the node's disk under its budget (see the module docstring)."""

    def __init__(
        self,
        *,
        budget: int,
        interval_s: float,
        node_id: str,
        store: ContentStore,
        steps: StepIndex,
        eviction: StepEviction,
        runs: RunIndex,
        cache: LocalCache,
        activities: Activities,
        published: Published,
        changed: Callable[[], Awaitable[None]] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.budget = budget
        self._interval_s = interval_s
        self._node_id = node_id
        self._store = store
        self._steps = steps
        self._eviction = eviction
        self._runs = runs
        self._cache = cache
        self._activities = activities
        self._published = published
        self._changed = changed  # tells every node of the cluster its published state changed
        self._lock = asyncio.Lock()
        self._metrics = metrics or Metrics()
        self._metrics.disk_budget.set(budget)
        self._task: asyncio.Task[None] | None = None
        self.last: Collection | None = None

    async def evicted(self, cids: list[str]) -> set[str]:
        """Which of ``cids`` (intermediate outputs) the disk budget evicted, and are not held
        again since (computed again by a later run)."""
        found = list(await self._eviction.evicted(cids))
        held = await self._store.index.content_ids_for_cids(found)
        return {cid for cid, content_id in zip(found, held, strict=True) if content_id is None}

    async def usage(self) -> Usage:
        """The repository's and the local cache's size now."""
        repo = await self._store.ipfs.repo_size()
        cache = await asyncio.to_thread(_tree_size, self._cache.root)
        self._metrics.disk_used.labels("repo").set(repo)
        self._metrics.disk_used.labels("cache").set(cache)
        return Usage(repo, cache, self.budget)

    async def collect(self, *, reason: str = "requested", who: str = "") -> Collection:
        """Collect down to the budget now (one collection at a time); with no budget, only
        what no pin keeps (``repo/gc``)."""
        async with self._lock:
            started = time.monotonic()
            await self._unpin_left()
            collection = Collection(reason, utc_now(), await self.usage())
            if collection.before.excess:
                await self._evict_intermediates(collection.before.excess, collection)
            async with self._store.gate.collecting() as quiet:
                if quiet:
                    await self._store.ipfs.collect_garbage()
                else:  # a slow upload is still adding: its blocks are not pinned yet
                    collection.kept[REPO_GC_PUT_OFF] = 1
                    log.warning("repo/gc put off: an add has been in flight for %.0f s", QUIET_WAIT_S)
            usage = await self.usage()
            if usage.excess:
                collection.cache_files = await self._remove_cache_files(usage.excess)
                usage = await self.usage()
            collection.after, collection.seconds = usage, time.monotonic() - started
        self.last = collection
        if collection.evicted and self._changed is not None:
            await self._changed()
        await self._record(collection, who or self._node_id)
        return collection

    async def _record(self, collection: Collection, who: str) -> None:
        report = collection.report()
        log.info(
            "garbage collected: %d bytes reclaimed in %.1f s (%d steps evicted, %d cache files); "
            "%d bytes held, budget %d",
            report["reclaimed"], report["seconds"], report["evicted_steps"],
            report["cache_files_removed"], report["after"]["total"], report["budget"],
        )  # fmt: skip
        cids = [item["cid"] for item in collection.evicted]
        details = {key: value for key, value in report.items() if key != "evicted"}
        await self._activities.record("garbage_collected", who, cids, **details)
        self._count(collection)

    def _count(self, collection: Collection) -> None:
        metrics = self._metrics
        metrics.gc_runs.inc()
        metrics.gc_reclaimed_bytes.inc(collection.reclaimed)
        metrics.gc_evicted.labels("step").inc(collection.evicted_steps)
        metrics.gc_evicted.labels("cache_file").inc(collection.cache_files)
        metrics.gc_duration.observe(collection.seconds)

    # --- intermediates ------------------------------------------------------------------------
    async def _evict_intermediates(self, excess: int, collection: Collection) -> None:
        """Evict the least recently used intermediates until about ``excess`` bytes went."""
        freed = 0
        for _ in range(ROUNDS_MAX):
            since = await self._eviction.now()  # before anything is read: later changes refuse
            active_runs, candidates = await self._candidates(collection.kept)
            if candidates is None:
                return
            for candidate in candidates:
                if freed >= excess:
                    return
                outcome = await self._evict(candidate, active_runs, since)
                if outcome == "changed":
                    break  # a run came or went: look again with its plan in mind
                if outcome == "evicted":
                    freed += candidate.size
                    collection.evicted.append(
                        {"cid": candidate.cid, "cache_ids": candidate.cache_ids, "size": candidate.size}
                    )
                else:
                    collection.kept[outcome] = collection.kept.get(outcome, 0) + 1
            else:
                return

    async def _evict(self, candidate: _Candidate, active_runs: list[str], since: float) -> str:
        """``evicted``, ``changed`` (runs came or went), or why it stayed."""
        entry = await self._store.index.get(candidate.content_id)
        if entry is None:
            return "gone already"
        outcome = "owned or held since"

        async def out_of_the_index() -> bool:  # under the content lock, owners and runs checked
            nonlocal outcome
            result = await self._eviction.evict(
                candidate.content_id, candidate.cid, candidate.cache_ids,
                active_runs=active_runs, since=since, node=self._node_id,
            )  # fmt: skip
            outcome = "changed" if result.runs_changed else "claimed or used" if result.busy else "evicted"
            return result.steps > 0

        try:
            await self._store.discard(entry, consent=out_of_the_index)
        except Unavailable as exc:
            if outcome != "evicted":
                raise
            # Out of every index, but the daemon did not unpin it: no later look would find it.
            await self._eviction.unpin_later(candidate.cid, candidate.content_id)
            log.warning("evicted %s, not unpinned yet (%s): unpinned at the next collection", entry.cid, exc)
        return outcome

    async def _unpin_left(self) -> None:
        """Unpin what an earlier collection evicted but the daemon did not unpin then, unless a
        run has put the same bytes back since (under the content lock, as a commit takes it)."""
        for cid, content_id in (await self._eviction.unpins_left()).items():
            async with self._store.content_lock(content_id):
                if await self._store.index.get(content_id) is None:
                    await self._store.ipfs.pin_rm(cid)
                await self._eviction.unpinned(cid)

    async def _candidates(self, kept: dict[str, int]) -> tuple[list[str], list[_Candidate] | None]:
        """The unfinished runs now, and the intermediates that may go, least recently used
        first (None: none may go now, e.g. an L2 cannot be asked)."""
        active_runs, plans = await self._runs.active_plans()
        needed = await self._needed(plans)
        last_used = await self._eviction.last_used()
        by_content: dict[str, list[StepEntry]] = {}
        for entry in await self._entries(list(last_used)):
            by_content.setdefault(entry.content_id, []).append(entry)
        wanted = {
            content_id: entries
            for content_id, entries in by_content.items()
            if self._evictable(content_id, entries, needed)
        }
        free = set(await self._free(list(wanted)))
        try:
            published = await self._published_of(sorted(free))
        except NodeError as exc:  # an L2 down: what it may have published stays
            log.warning("no intermediate evicted: %s", exc.message)
            kept["an L2 could not be asked"] = len(free)
            return active_runs, None
        candidates = [
            _Candidate(
                content_id,
                entries[0].cid,
                entries[0].size,
                sorted(entry.cache_id for entry in entries),
                max(last_used[entry.cache_id] for entry in entries),
            )
            for content_id, entries in wanted.items()
            if content_id in free and content_id not in published
        ]
        return active_runs, sorted(candidates, key=lambda item: (item.last_used, item.content_id))

    async def _published_of(self, content_ids: list[str]) -> set[str]:
        """Those a trusted L2 published, asked BATCH at a time (one request each)."""
        return {content_id for batch in _batches(content_ids) for content_id in await self._published(batch)}

    def _evictable(self, content_id: str, entries: list[StepEntry], needed: set[str]) -> bool:
        """Media this node computed, that no unfinished run's plan names."""
        return (
            content_id not in needed
            and kind_of(entries[0].media_type) is not None
            and any(entry.node == self._node_id for entry in entries)
            and not any(entry.cache_id in needed for entry in entries)
        )

    async def _free(self, content_ids: list[str]) -> list[str]:
        """Those nobody owns and no run holds."""
        held = {
            content_id
            for batch in _batches(content_ids)
            for content_id in await self._store.index.in_library(batch)
        }
        return [content_id for content_id in content_ids if content_id not in held]

    async def _entries(self, cache_ids: list[str]) -> list[StepEntry]:
        return [entry for batch in _batches(cache_ids) for entry in await self._steps.get_many(batch)]

    async def _needed(self, plans: list[dict[str, Any]]) -> set[str]:
        """Cache ids and content ids the unfinished runs' plans name, with the steps their
        expansions added."""
        needed: set[str] = set()
        for plan in plans:
            for step in plan["steps"]:
                needed.add(step["cache_id"])
                if step["type"] == EXPAND:
                    needed |= await self._expanded(step["cache_id"])
        for entry in await self._entries(sorted(needed)):
            needed.add(entry.content_id)
        return needed

    async def _expanded(self, cache_id: str) -> set[str]:
        record = await recorded_expansion(self._steps, self._store, cache_id)
        if record is None:
            return set()  # not expanded yet: its steps are not known, nor recorded by this run
        return {str(step["cache_id"]) for step in record.get("steps", [])}

    # --- local cache files --------------------------------------------------------------------
    async def _remove_cache_files(self, excess: int) -> int:
        """Remove the least recently used local cache files until ``excess`` bytes went; how many."""
        _, plans = await self._runs.active_plans()
        needed = await self._needed(plans)
        files = await asyncio.to_thread(_cache_files, self._cache.root, time.time() - CACHE_GRACE_S)
        removed = freed = 0
        for path, size, _ in files:
            if freed >= excess:
                break
            if path.name in needed:
                continue
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(path.unlink)
                removed, freed = removed + 1, freed + size
        return removed

    # --- the periodic look --------------------------------------------------------------------
    def start(self) -> None:
        """Look at the budget every interval (only with a budget)."""
        if self.budget and self._task is None:
            self._task = asyncio.create_task(self._every_interval(), name="garbage-collector")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _every_interval(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                if (await self.usage()).excess:
                    await self.collect(reason="budget")
            except NodeError as exc:  # Redis or IPFS away: the next look tries again
                log.warning("garbage collection put off: %s", exc.message)
            except Exception:  # a bug: logged; the node serves on
                log.exception("garbage collection failed")


def _batches(items: list[str]) -> list[list[str]]:
    """``items`` in slices of BATCH: one Redis round trip or L2 request each."""
    return [items[start : start + BATCH] for start in range(0, len(items), BATCH)]


def _tree_size(root: Path) -> int:
    """Bytes the files under ``root`` hold."""
    total = 0
    for folder, _, names in os.walk(root):
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(os.path.join(folder, name)).st_size
    return total


def _cache_files(root: Path, touched_before: float) -> list[tuple[Path, int, float]]:
    """The cache's content files not touched since ``touched_before``, least recently used first:
    (path, size, last access or change)."""
    found = []
    for folder, _, names in os.walk(root):
        for name in names:
            if name.startswith("."):  # a file being written
                continue
            path = Path(folder, name)
            try:
                info = path.stat()
            except FileNotFoundError:
                continue
            used = max(info.st_atime, info.st_mtime)
            if used < touched_before:
                found.append((path, info.st_size, used))
    return sorted(found, key=lambda item: item[2])
