"""Reusing a step a trusted peer computed: its output fetched by CID instead of computed.

A peer's entry (merged from its published state by ``node.sync.peers``) is taken only when its
receipt, fetched from IPFS, is signed by a trusted node and names this very step and output;
the output is then fetched and checked against its SHA3-256 (``LocalCache.materialize``),
pinned and indexed here, and the step recorded with the peer's receipt, so this node's runs
cite the peer's signature in their provenance. Anything failing leaves the step to compute.
"""

from __future__ import annotations

import logging

from node.errors import NodeError
from node.executor.errors import ReceiptMismatch
from node.executor.planner import Step
from node.executor.provenance import RECORD_MAX_BYTES
from node.records import verify_record
from node.store.cache import LocalCache
from node.store.content import ContentStore
from node.sync.index import ContentEntry, StepEntry, StepIndex
from node.sync.peers import PeerSteps

log = logging.getLogger(__name__)


class PeerAdoption:
    """Fetches peers' step outputs for the scheduler (``Scheduler(adopt=...)``)."""

    def __init__(
        self,
        *,
        peer_steps: PeerSteps,
        store: ContentStore,
        steps: StepIndex,
        cache: LocalCache,
        trusted: set[str],
    ) -> None:
        self._peer_steps = peer_steps
        self._store = store
        self._steps = steps
        self._cache = cache
        self._trusted = trusted

    async def __call__(self, step: Step) -> ContentEntry | None:
        """The step's output, fetched from the peer that computed it; None if no trusted peer
        did (or fetching it failed: then it is computed here)."""
        found = await self._peer_steps.get(step.cache_id)
        if found is None:
            return None
        entry, peer = found
        try:
            receipt = await self._receipt(entry)
            output = ContentEntry(entry.content_id, entry.cid, entry.size, entry.media_type)
            await self._cache.materialize(output)  # fetched by CID, checked against its SHA3-256
            stored = await self._store.commit(output, undo_pin=False)
            await self._steps.put_if_absent(entry, receipt)
        except NodeError as exc:
            log.warning(
                "step %s: %s's output not fetched (%s); computing it here", step.node_id, peer, exc.message
            )
            return None
        log.info("step %s: output %s fetched from peer %s", step.node_id, entry.cid, peer)
        return stored.entry

    async def _receipt(self, entry: StepEntry) -> bytes:
        data = await self._store.ipfs.cat_all(entry.receipt_cid, RECORD_MAX_BYTES)
        receipt = verify_record(data, self._trusted)
        output = receipt.get("output") or {}
        if receipt.get("cache_id") != entry.cache_id or output.get("cid") != entry.cid:
            raise ReceiptMismatch(f"receipt {entry.receipt_cid} is not for this step and output")
        if output.get("sha3_256") != entry.content_id:
            raise ReceiptMismatch(f"receipt {entry.receipt_cid} names other bytes")
        return data
