"""A completed run as a standard attestation: an in-toto Statement v1 with a SLSA Provenance v1
predicate, in a DSSE envelope signed by the node that finished the run.

The node's own provenance record (``node.executor.provenance``) says the same things in the
project's format; this one is for standard supply-chain tools (in-toto, SLSA verifiers,
securesystemslib). It is written once, with the provenance record, by the run's finisher, and
stored in IPFS (pinned, indexed) as the exact JCS bytes of the envelope: the run record names
its CID (``attestation_cid``), so every request answers the same bytes.

- ``subject``: the run's output, named by its output name, with the SHA-256 and SHA3-256 of
  its bytes (the SHA3-256 is its content id; the SHA-256 is computed here, streamed);
- ``buildDefinition``: :data:`BUILD_TYPE`; the recipe, inputs and output name as external
  parameters; plan id, effects and tool versions as internal ones; the recipe, plan record and
  inputs as resolved dependencies (``ipfs://CID``, SHA-256 and SHA3-256);
- ``runDetails``: the builder is the node's ``did:key``; the invocation id is the run id; the
  provenance record and the step receipts are byproducts.

The DSSE signature is Ed25519 over the PAE of the payload type and the payload (the JCS bytes
of the statement); its ``keyid`` is the signing node's ``did:key``, whose public key is inside
it (``node.identity``) and in ``GET /identity``. docs/cooperation.md "Attestations" shows how to
verify it with standard tools.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from typing import Any

from cachetools import LRUCache

from node import __version__
from node.executor.planner import tool_versions
from node.executor.provenance import RECORD_MAX_BYTES, RunFacts, effects_used
from node.identity import NodeIdentity
from node.records import jcs
from node.store.content import ContentStore
from node.sync.index import ContentEntry

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://artdag.dev/l1-render/v1"  # what the fields mean: docs/cooperation.md
PAYLOAD_TYPE = "application/vnd.in-toto+json"
HASH_BATCH_BYTES = 1024 * 1024  # chunks gathered before one hop to a thread to hash them
KNOWN_SHA256 = 4096  # content ids whose SHA-256 is remembered (inputs are often used again)


def did_key(node_id: str) -> str:
    """The node id as a DID (``did:key:z6Mk…``): SLSA wants the builder id as a URI."""
    return f"did:key:{node_id}"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what the signature covers."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


def envelope(identity: NodeIdentity, statement: dict[str, Any]) -> bytes:
    """The JCS bytes of a DSSE envelope holding ``statement``, signed by this node. Ed25519 and
    JCS are deterministic: the same statement always gives the same bytes."""
    payload = jcs(statement)
    signature = identity.sign(pae(PAYLOAD_TYPE, payload))
    return jcs(
        {
            "payload": base64.b64encode(payload).decode(),
            "payloadType": PAYLOAD_TYPE,
            "signatures": [{"keyid": did_key(identity.node_id), "sig": base64.b64encode(signature).decode()}],
        }
    )


class Attester:
    """Writes the attestation of a completed run (its bytes hashed with SHA-256 on the way)."""

    def __init__(self, identity: NodeIdentity, store: ContentStore) -> None:
        self._identity = identity
        self._store = store
        # A content id names its bytes for good, so their SHA-256 never goes stale.
        self._sha256: LRUCache[str, str] = LRUCache(maxsize=KNOWN_SHA256)

    async def attest(self, facts: RunFacts, provenance_cid: str, started: str, finished: str) -> str:
        """Sign and store the attestation of a finished run; its CID."""
        provenance = await self._store.resolve(provenance_cid)
        plan = await self._store.resolve(facts.plan_cid)
        receipts = await self._store.index.content_ids_for_cids(facts.receipts)
        statement = {
            "_type": STATEMENT_TYPE,
            "subject": [await self._descriptor(facts.output_name, facts.output)],
            "predicateType": PREDICATE_TYPE,
            "predicate": {
                "buildDefinition": {
                    "buildType": BUILD_TYPE,
                    "externalParameters": _external(facts),
                    "internalParameters": _internal(facts),
                    "resolvedDependencies": [
                        await self._descriptor(f"recipe:{facts.recipe_name}", facts.recipe),
                        await self._descriptor("plan", plan),
                        *[await self._descriptor(f"input:{name}", entry) for name, entry in facts.inputs],
                    ],
                },
                "runDetails": {
                    "builder": {
                        "id": did_key(self._identity.node_id),
                        "version": {"artdag-node": __version__},
                    },
                    "metadata": {"invocationId": facts.run_id, "startedOn": started, "finishedOn": finished},
                    "byproducts": [
                        await self._descriptor("provenance", provenance),
                        *[
                            _receipt(cid, content_id)
                            for cid, content_id in zip(facts.receipts, receipts, strict=True)
                        ],
                    ],
                },
            },
        }
        data = envelope(self._identity, statement)
        return (await self._store.put_bytes(data, max_size=RECORD_MAX_BYTES)).entry.cid

    async def _descriptor(self, name: str, entry: ContentEntry) -> dict[str, Any]:
        """A ResourceDescriptor of stored content: its ``ipfs://`` URI, both digests, its type."""
        return {
            "name": name,
            "uri": f"ipfs://{entry.cid}",
            "digest": {"sha256": await self.sha256(entry), "sha3_256": entry.content_id},
            "mediaType": entry.media_type,
        }

    async def sha256(self, entry: ContentEntry) -> str:
        """The SHA-256 hex of stored content, streamed and hashed off the event loop."""
        known = self._sha256.get(entry.content_id)
        if known is not None:
            return known
        hasher = hashlib.sha256()
        batch: list[bytes] = []
        size = 0
        async with self._store.open(entry) as chunks:
            async for chunk in chunks:
                batch.append(chunk)
                size += len(chunk)
                if size >= HASH_BATCH_BYTES:
                    await asyncio.to_thread(_update, hasher, batch)
                    batch, size = [], 0
        await asyncio.to_thread(_update, hasher, batch)
        self._sha256[entry.content_id] = hasher.hexdigest()
        return hasher.hexdigest()


def _update(hasher: Any, chunks: list[bytes]) -> None:
    for chunk in chunks:
        hasher.update(chunk)  # hashlib lets go of the GIL for large buffers


def _external(facts: RunFacts) -> dict[str, Any]:
    """What the client chose: the recipe (a built-in effect's params are inside it), the
    inputs by name, the output name."""
    return {
        "recipe": {"name": facts.recipe_name, "cid": facts.recipe.cid, "sha3_256": facts.recipe.content_id},
        "inputs": [
            {"name": name, "cid": entry.cid, "sha3_256": entry.content_id} for name, entry in facts.inputs
        ],
        "outputName": facts.output_name,
    }


def _internal(facts: RunFacts) -> dict[str, Any]:
    """What the node chose: the plan, the effects it ran (name, version, hash) and the versions of
    the tools that decide output bytes."""
    return {
        "planId": facts.plan.plan_id,
        "planCid": facts.plan_cid,
        "effects": effects_used(facts.plan),
        "tools": tool_versions(),
    }


def _receipt(cid: str, content_id: str | None) -> dict[str, Any]:
    described: dict[str, Any] = {"name": "receipt", "uri": f"ipfs://{cid}", "mediaType": "application/json"}
    if content_id is not None:
        described["digest"] = {"sha3_256": content_id}
    return described
