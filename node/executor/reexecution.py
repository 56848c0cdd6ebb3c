"""Re-execution records: what a provenance record claims, and what this node made of it.

A re-execution (``node.executor.reexecutor``) computes every step of a provenance record again
on this node and compares each output's CID with the one its receipt states. This module reads
the claim (:func:`load_original`: the provenance record, its plan with every expansion spliced
in, its receipts, its hardware descriptor) and writes the result: a signed **re-execution
record** (``artdag/reexecution``), stored in IPFS (pinned) like every other record::

    {"kind": "artdag/reexecution", "version": 1,
     "provenance": CID, "run_id": ..., "rendered_by": NODE_ID (who signed the provenance),
     "reexecuted_by": NODE_ID (this node, also the signer), "started_at": ..., "finished_at": ...,
     "infrastructure": {"software": CID, "hardware": CID} (this node's descriptors),
     "method": "each step from its recorded inputs",
     "summary": {"reproduced": n, "different": n, "not reproducible here": n},
     "steps": [{"step", "cache_id", "type", "verdict", "recorded": {cid, sha3_256},
                "reexecuted": {cid, sha3_256} (absent if not computed), "inputs": "recorded" or
                "re-executed", "reason": ... (absent if reproduced)}],
     "signer": ..., "signature": ...}
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from node.errors import NodeError, NotFound
from node.executor.expansion import completed
from node.executor.planner import Plan
from node.executor.provenance import RECORD_MAX_BYTES, RecordWriter, fetch_signed
from node.records import RecordError
from node.store.cid import normalize_cid
from node.store.errors import ContentNotFound
from node.store.ipfs import IpfsClient
from node.sync.index import ContentEntry

RECORD_KIND = "artdag/reexecution"
REPRODUCED, DIFFERENT, NOT_HERE = "reproduced", "different", "not reproducible here"
VERDICTS = (REPRODUCED, DIFFERENT, NOT_HERE)
METHOD = (
    "each step from its recorded inputs (the outputs its receipts and the provenance name); from "
    "the re-executed outputs of the steps before it only where a recorded input is not retrievable"
)
RECEIPTS_AT_ONCE = 16  # receipts fetched from the daemon concurrently


@dataclass(frozen=True)
class Original:
    """What a provenance record claims: its plan (expansions spliced in), the receipts by cache
    id, the run's inputs by content id, and the hardware it names."""

    cid: str
    record: Mapping[str, Any]
    plan: Plan
    receipts: Mapping[str, Mapping[str, Any]]
    sources: Mapping[str, ContentEntry]
    hardware: Mapping[str, Any]
    signers: frozenset[str] = frozenset()  # who signed the provenance and the plan its steps run as

    def signed_by(self, trusted: set[str]) -> bool:
        """Whether only ``trusted`` nodes signed what the re-execution would run: the plan's
        step configs go to this node's workers as written, so their author must be trusted."""
        return bool(self.signers) and self.signers <= trusted

    @property
    def computed(self) -> int:
        """How many steps a re-execution computes (every step but the SOURCEs)."""
        return sum(step.type != "SOURCE" for step in self.plan.steps)

    def recorded(self, cache_id: str) -> ContentEntry | None:
        """The output a step (or SOURCE) had in the original run, as the record states it."""
        if cache_id in self.sources:
            return self.sources[cache_id]
        receipt = self.receipts.get(cache_id)
        return entry_of(receipt.get("output")) if receipt is not None else None


@dataclass(frozen=True)
class StepVerdict:
    """One step's outcome: ``verdict`` is one of VERDICTS; ``reason`` says why it is not
    ``reproduced``; ``inputs`` whether it ran on the recorded inputs or on re-executed ones."""

    step: str
    cache_id: str
    type: str
    verdict: str
    recorded: ContentEntry | None
    reexecuted: ContentEntry | None = None
    inputs: str = "recorded"
    reason: str = ""

    def record(self) -> dict[str, Any]:
        """The step as the re-execution record (and the status answer) states it."""
        item: dict[str, Any] = {"step": self.step, "cache_id": self.cache_id, "type": self.type,
                                "verdict": self.verdict, "inputs": self.inputs}  # fmt: skip
        if self.recorded is not None:
            item["recorded"] = {"cid": self.recorded.cid, "sha3_256": self.recorded.content_id}
        if self.reexecuted is not None:
            item["reexecuted"] = {"cid": self.reexecuted.cid, "sha3_256": self.reexecuted.content_id}
        return {**item, "reason": self.reason} if self.reason else item


@dataclass
class Outcome:
    """A finished re-execution, before it is signed."""

    original: Original
    started_at: str
    finished_at: str
    verdicts: list[StepVerdict] = field(default_factory=list)


def summary(verdicts: list[StepVerdict]) -> dict[str, int]:
    """How many steps got each verdict."""
    return {verdict: sum(item.verdict == verdict for item in verdicts) for verdict in VERDICTS}


async def write_reexecution(writer: RecordWriter, outcome: Outcome) -> str:
    """Sign and store (pinned, indexed) the re-execution record; its CID."""
    original = outcome.original
    return await writer.put(
        {
            "kind": RECORD_KIND,
            "version": 1,
            "provenance": original.cid,
            "run_id": str(original.record.get("run_id", "")),
            "rendered_by": str(original.record.get("signer", "")),
            "reexecuted_by": writer.identity.node_id,
            "started_at": outcome.started_at,
            "finished_at": outcome.finished_at,
            "infrastructure": await writer.descriptors(),
            "method": METHOD,
            "summary": summary(outcome.verdicts),
            "steps": [verdict.record() for verdict in outcome.verdicts],
        }
    )


async def load_original(ipfs: IpfsClient, cid: str) -> Original:
    """Read the provenance record at ``cid`` (any signer: the verdicts are about the bytes, and
    whoever reads the re-execution record decides whom to trust) with its plan, expansions and
    receipts from this node's daemon. NotFound if the record is not there; RecordError if it or
    what it names is not a valid signed record of the right kind."""
    try:
        record = await fetch_signed(ipfs, cid, "artdag/provenance")
    except ContentNotFound:
        raise NotFound(
            f"no provenance record {cid} is retrievable from this node's IPFS daemon: pin it there "
            "first (ipfs pin add), or ask a node that holds it",
            cid=cid,
        ) from None
    plan, plan_signer = await _plan(ipfs, record)
    receipts = await _receipts(ipfs, record)
    signers = frozenset({str(record.get("signer", "")), plan_signer})
    hardware = await _hardware(ipfs, record)
    return Original(cid, record, plan, receipts, _sources(record), hardware, signers)


async def _plan(ipfs: IpfsClient, record: Mapping[str, Any]) -> tuple[Plan, str]:
    """The plan, its expansions spliced in, and who signed it."""
    stated = _mapping(record.get("plan"))
    plan_record = await fetch_signed(ipfs, str(stated.get("cid", "")), "artdag/plan")
    try:
        plan = Plan.from_record(plan_record)
    except (KeyError, TypeError, ValueError) as exc:
        raise RecordError(f"the plan {stated.get('cid')} is malformed: {exc!r}") from exc
    expansions: dict[str, Mapping[str, Any]] = {}
    for expansion_cid in _list(record.get("expansions")):
        data = await ipfs.cat_all(normalize_cid(str(expansion_cid)), RECORD_MAX_BYTES)
        try:
            expansion = await asyncio.to_thread(json.loads, data)
            expansions[str(expansion["expansion"])] = expansion
        except (ValueError, KeyError, TypeError) as exc:
            raise RecordError(f"the expansion {expansion_cid} is malformed: {exc!r}") from exc

    async def load(cache_id: str) -> Mapping[str, Any] | None:
        return expansions.get(cache_id)

    try:
        return await completed(plan, load), str(plan_record.get("signer", ""))
    except (NodeError, KeyError, TypeError) as exc:
        raise RecordError(f"the expansions do not fit the plan: {exc}") from exc


async def _receipts(ipfs: IpfsClient, record: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    limit = asyncio.Semaphore(RECEIPTS_AT_ONCE)

    async def fetch(receipt_cid: object) -> dict[str, Any]:
        async with limit:
            return await fetch_signed(ipfs, str(receipt_cid), "artdag/step-receipt")

    fetched = await asyncio.gather(*(fetch(item) for item in _list(record.get("receipts"))))
    return {str(receipt.get("cache_id")): receipt for receipt in fetched}


async def _hardware(ipfs: IpfsClient, record: Mapping[str, Any]) -> Mapping[str, Any]:
    """The hardware descriptor the record names; empty if it is not retrievable (the CPU class
    is then unknown, and the steps are re-executed all the same)."""
    try:
        return await fetch_signed(ipfs, str(_mapping(record.get("infrastructure")).get("hardware", "")),
                                  "artdag/hardware")  # fmt: skip
    except NodeError:
        return {}


def _sources(record: Mapping[str, Any]) -> dict[str, ContentEntry]:
    entries = (entry_of(item) for item in _list(record.get("inputs")))
    return {entry.content_id: entry for entry in entries if entry is not None}


def entry_of(content: object) -> ContentEntry | None:
    """The content a record states (``{cid, sha3_256, size, media_type}``); None if malformed."""
    if not isinstance(content, Mapping):
        return None
    try:
        return ContentEntry(
            str(content["sha3_256"]), normalize_cid(str(content["cid"])), int(content.get("size", 0)),
            str(content.get("media_type", "")),
        )  # fmt: skip
    except (KeyError, TypeError, ValueError, NodeError):
        return None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []
