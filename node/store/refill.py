"""Filling a new IPFS repository from what the node still has, after an old one was moved aside.

When the embedded daemon's repository was made by another implementation (js-ipfs), the
services move it aside, start Kubo on an empty one and leave a marker file. At the node's next
start, :func:`refill` adds every file of the local cache that an index names again, with the
fixed import settings, so each gets the CID it had, and pins it. Then it drops the index entries
(content and steps) whose bytes no daemon of the cluster holds any more: asked first of this
daemon, then of the daemons it is peered with, within a short deadline. It logs the counts and
removes the marker; a node stopped halfway refills again at its next start (adds are idempotent).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from node.errors import NodeError
from node.store.cache import LocalCache
from node.store.ipfs import IpfsClient
from node.sync.index import ContentIndex, StepIndex

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 5.0  # a peered daemon that holds a block answers within this
PROBES_AT_ONCE = 16


@dataclass
class Refilled:
    """What a refill did: files added again, and index entries kept or dropped."""

    added: int = 0
    kept: int = 0
    dropped_content: int = 0
    dropped_steps: int = 0


async def refill(
    marker: Path, *, ipfs: IpfsClient, cache: LocalCache, contents: ContentIndex, steps: StepIndex
) -> Refilled | None:
    """Refill the repository if ``marker`` says one was moved aside; None if not."""
    if not await asyncio.to_thread(marker.exists):
        return None
    content_entries = await contents.get_many(await contents.all_ids())
    step_entries = await steps.get_many(await steps.all_ids())
    wanted = {entry.cid: entry.content_id for entry in content_entries}
    wanted.update({entry.cid: entry.content_id for entry in step_entries})
    done = Refilled()
    for cid, content_id in wanted.items():
        path = cache.path_for(content_id)
        if await asyncio.to_thread(path.is_file):
            added = await cache.add_file(path, pin=True)
            done.added += 1
            if added.cid != cid:  # other import settings once: the index names the old CID
                log.warning("refill: %s was added as %s, the index says %s", content_id, added.cid, cid)
    held = await _held(ipfs, list(wanted))
    for entry in content_entries:
        if entry.cid in held:
            done.kept += 1
        else:
            await contents.remove(entry)
            done.dropped_content += 1
    for step in step_entries:
        if step.cid not in held:
            await steps.forget(step.cache_id)
            done.dropped_steps += 1
    await asyncio.to_thread(marker.unlink, missing_ok=True)
    log.warning(
        "refilled the new IPFS repository: %d files added again from the local cache, %d entries "
        "kept, %d content and %d step entries dropped (their bytes are nowhere in the cluster)",
        done.added, done.kept, done.dropped_content, done.dropped_steps,
    )  # fmt: skip
    return done


async def _held(ipfs: IpfsClient, cids: list[str]) -> set[str]:
    """The CIDs some daemon of the cluster still holds (this one, or one it is peered with)."""
    slots = asyncio.Semaphore(PROBES_AT_ONCE)

    async def probe(cid: str) -> str | None:
        async with slots:
            try:
                await ipfs.call("block/stat", arg=cid, timeout_s=PROBE_TIMEOUT_S)
            except NodeError:
                return None
            return cid

    return {cid for cid in await asyncio.gather(*map(probe, cids)) if cid is not None}
