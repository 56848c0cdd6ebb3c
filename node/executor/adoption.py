"""Reusing a step a trusted peer computed: its output fetched by CID instead of computed.

A peer's entry (merged from its published state by ``node.federation.peers``) is taken only when its
receipt, fetched from IPFS, is signed by a trusted node and names this very step and output;
the output is then fetched and checked against its SHA3-256 (``LocalCache.materialize``),
pinned and indexed here, and the step recorded with the peer's receipt, so this node's runs
cite the peer's signature in their provenance. Anything failing leaves the step to compute.
"""

from __future__ import annotations

import logging
import time

from node.errors import NodeError
from node.executor.errors import ReceiptMismatch
from node.executor.planner import Step
from node.executor.provenance import RECORD_MAX_BYTES
from node.federation.peers import PeerSteps
from node.records import RecordError, verify_record
from node.store.content import ContentStore
from node.store.local_cache import LocalCache
from node.sync.index import ContentEntry, StepEntry, StepIndex

log = logging.getLogger(__name__)


RECEIPT_TIMEOUT_S = 10.0  # a peer that does not answer this fast is not waited for
RETRY_AFTER_S = 600.0  # a peer's output that could not be fetched is not tried again before


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
        self._failed: dict[str, float] = {}  # cache id -> when fetching it last failed

    async def __call__(self, step: Step) -> ContentEntry | None:
        """The step's output, fetched from the peer that computed it; None if no trusted peer
        did (or fetching it failed: then it is computed here)."""
        if time.monotonic() - self._failed.get(step.cache_id, -RETRY_AFTER_S) < RETRY_AFTER_S:
            return None
        found = await self._peer_steps.get(step.cache_id)
        if found is None:
            return None
        entry, peer = found
        try:
            receipt = await self._receipt(entry)
            output = ContentEntry(entry.content_id, entry.cid, entry.size, entry.media_type)
            await self._cache.materialize(output, offline=False)  # by CID, checked against its SHA3-256
            stored = await self._store.commit(output, undo_pin=False)
            await self._steps.put_if_absent(entry, receipt)  # with the receipt: for this run's provenance
        except (ReceiptMismatch, RecordError) as exc:  # the entry is worthless: forget it
            log.warning(
                "step %s: %s's entry refused (%s); computing it here", step.node_id, peer, exc.message
            )
            await self._peer_steps.forget(step.cache_id)
            return None
        except NodeError as exc:  # the peer or the network: not again for a while
            log.warning(
                "step %s: %s's output not fetched (%s); computing it here", step.node_id, peer, exc.message
            )
            self._failed[step.cache_id] = time.monotonic()
            return None
        log.info("step %s: output %s fetched from peer %s", step.node_id, entry.cid, peer)
        return stored.entry

    async def _receipt(self, entry: StepEntry) -> bytes:
        """The receipt's signed bytes, if a trusted node signed it for this very step and output."""
        data = await self._store.ipfs.cat_all(
            entry.receipt_cid, RECORD_MAX_BYTES, offline=False, timeout_s=RECEIPT_TIMEOUT_S
        )
        receipt = verify_record(data, self._trusted)
        output = receipt.get("output")
        expected = {
            "cid": entry.cid,
            "sha3_256": entry.content_id,
            "size": entry.size,
            "media_type": entry.media_type,
        }
        if receipt["signer"] != entry.node:
            raise ReceiptMismatch(
                f"receipt {entry.receipt_cid} is signed by another node than the entry says"
            )
        if receipt.get("kind") != "artdag/step-receipt" or receipt.get("cache_id") != entry.cache_id:
            raise ReceiptMismatch(f"receipt {entry.receipt_cid} is not a receipt of step {entry.cache_id}")
        if not isinstance(output, dict) or {key: output.get(key) for key in expected} != expected:
            raise ReceiptMismatch(f"receipt {entry.receipt_cid} names another output than the entry")
        return data
