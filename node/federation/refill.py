"""Filling a new IPFS repository from what the node still has, after an old one was moved aside.

When the embedded daemon's repository was made by another implementation (js-ipfs), the
services move it aside, start Kubo on an empty one and leave a marker file. At the node's next
start, :func:`refill` adds every file of the local cache that an index names again, with the
fixed import settings, so each gets the CID it had, and pins it. Only then does it look for what
is gone, and carefully, because the indexes are the cluster's: it waits until no other node of
the cluster is refilling (each says so in the daemon registry) and every other daemon is
connected, then asks this daemon and, within a short deadline, the peered ones for each indexed
CID. Index entries (content and steps) whose bytes nobody holds are dropped; a daemon that
cannot be asked stops the refill with nothing dropped. It logs the counts and removes the
marker; a node stopped halfway refills again at its next start (adds are idempotent).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from node.federation.peering import DaemonPeering
from node.store.errors import ContentNotFound, IpfsTimeout
from node.store.gone import Gone
from node.store.ipfs import IpfsClient
from node.store.local_cache import LocalCache
from node.sync.index import ContentEntry, ContentIndex, StepEntry, StepIndex

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 5.0  # a connected daemon that holds a block answers within this
PROBES_AT_ONCE = 16
READY_POLL_S = 5.0


@dataclass
class Refilled:
    """What a refill did: files added again, and index entries kept or dropped."""

    added: int = 0
    kept: int = 0
    dropped_content: int = 0
    dropped_steps: int = 0


async def refill(
    marker: Path,
    *,
    ipfs: IpfsClient,
    cache: LocalCache,
    gone: Gone,
    contents: ContentIndex,
    steps: StepIndex,
    peering: DaemonPeering,
) -> Refilled | None:
    """Refill the repository if ``marker`` says one was moved aside; None if not."""
    if not await asyncio.to_thread(marker.exists):
        return None
    content_entries = await contents.get_many([content_id for content_id, _ in await contents.listed()])
    step_entries = await steps.get_many([cache_id for cache_id, _ in await steps.listed()])
    indexed: list[ContentEntry | StepEntry] = [*content_entries, *step_entries]
    done = Refilled()
    done.added = await _add_cached(ipfs, cache, indexed)
    peering.refilling = False
    await _cluster_ready(peering)
    held = await _held(ipfs, [entry.cid for entry in indexed])
    for entry in content_entries:
        if entry.cid in held:
            done.kept += 1
        else:
            await contents.remove(entry)
            await gone.forget(entry)  # its thumbnail, and what the HTTP layer remembers of it
            done.dropped_content += 1
    for step in step_entries:
        if step.cid not in held:
            await steps.forget(step)
            done.dropped_steps += 1
    await asyncio.to_thread(marker.unlink, missing_ok=True)
    log.warning(
        "refilled the new IPFS repository: %d files added again from the local cache, %d entries "
        "kept, %d content and %d step entries dropped (their bytes are nowhere in the cluster)",
        done.added, done.kept, done.dropped_content, done.dropped_steps,
    )  # fmt: skip
    return done


async def _add_cached(ipfs: IpfsClient, cache: LocalCache, entries: list[ContentEntry | StepEntry]) -> int:
    """Add again, pinned, every cached file an entry names; how many got their old CID."""
    added = 0
    for cid, content_id in {entry.cid: entry.content_id for entry in entries}.items():
        path = cache.path_for(content_id)
        if not await asyncio.to_thread(path.is_file):
            continue
        got = (await cache.add_file(path, pin=True)).cid
        if got == cid:
            added += 1
        else:  # added once with other import settings: the index names a CID these bytes lack
            await ipfs.pin_rm(got)
            log.warning("refill: %s was added as %s, the index names %s", content_id, got, cid)
    return added


async def _cluster_ready(peering: DaemonPeering) -> None:
    """Wait until no other node of the cluster is refilling and every other daemon is
    connected: before that, "nobody holds it" cannot be told from "not back yet"."""
    waited = False
    while True:
        registry = await peering.refresh()
        others = {daemon.peer_id for daemon in registry.others}
        unready = registry.refilling | (others - await peering.connected())
        if not unready:
            return
        if not waited:
            log.info("refill waits for IPFS daemons %s (refilling or not connected yet)", sorted(unready))
            waited = True
        await asyncio.sleep(READY_POLL_S)


async def _held(ipfs: IpfsClient, cids: list[str]) -> set[str]:
    """The CIDs this daemon holds, or a connected daemon sends within the probe deadline.
    A daemon that cannot be asked (unavailable, an error) raises: nothing is dropped."""
    slots = asyncio.Semaphore(PROBES_AT_ONCE)

    async def probe(cid: str) -> str | None:
        async with slots:
            try:  # offline first: most are here, and the answer is immediate
                await ipfs.call("block/stat", arg=cid, offline="true")
                return cid
            except ContentNotFound:
                pass
            try:
                await ipfs.call("block/stat", arg=cid, timeout_s=PROBE_TIMEOUT_S)
            except IpfsTimeout:  # no connected daemon sent it
                return None
            return cid

    return {cid for cid in await asyncio.gather(*map(probe, dict.fromkeys(cids))) if cid is not None}
