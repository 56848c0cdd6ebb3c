"""Signed records of rendering: step receipts, plans, provenance, and their verification.

Every record is a signed record (``node.records``) added to IPFS as its exact bytes, pinned and
indexed, so ``GET /cache/{cid}`` serves it and anyone holding the CID can check it:

- a **step receipt** (``artdag/step-receipt``) says which node computed which step (cache id,
  type, config, input cache ids, runtime) and what came out (CID, SHA3-256);
- a **plan** (``artdag/plan``) lists a run's steps and cache ids;
- **provenance** (``artdag/provenance``) is the seeds' record (run id, rendered_at, rendered_by,
  output {name, cid, sha3_256}, inputs, effects, infrastructure {software, hardware} as CIDs of
  descriptor documents) plus the recipe and plan CIDs and the CIDs of the step receipts, signed
  by the node that finished the run.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import platform
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from node import __version__
from node.errors import NodeError, NotFound
from node.executor.planner import Plan, Step, tool_versions
from node.identity import NodeIdentity
from node.media.ffmpeg import cpu_class
from node.pixels.effects import EFFECTS
from node.records import RecordError, SignedRecord, sign_record, verify_record
from node.store.cid import LEAF_MAX_BYTES, leaf_cid, normalize_cid
from node.store.content import ContentStore
from node.store.errors import ContentTooLarge, IpfsError
from node.store.ipfs import IpfsClient
from node.sync.index import ContentEntry, StepIndex
from node.timestamps import utc_now

log = logging.getLogger(__name__)
Evicted = Callable[[list[str]], Awaitable[set[str]]]  # which intermediate output CIDs were evicted

RECORD_MAX_BYTES = 16 * 1024 * 1024


class RecordWriter:
    """Signs records with the node's key and stores them in IPFS (pinned, indexed).

    A step receipt is signed when its step is done and committed with the step (its bytes in
    Redis, under the CID computed here), then added to IPFS in the background by
    :meth:`publish_soon`, so no step waits for the daemon twice. Whoever finishes a run calls
    :meth:`publish` for the run's receipts first: the ones still missing (their signer died, or
    has not got to them yet) are added from Redis, so a provenance record names only CIDs that
    can be fetched."""

    def __init__(self, identity: NodeIdentity, store: ContentStore, steps: StepIndex) -> None:
        self.identity = identity
        self._store = store
        self._steps = steps
        self._descriptors: dict[str, str] = {}  # name -> CID, once stored
        self._queued: list[str] = []  # receipt CIDs to add to IPFS
        self._publishing: asyncio.Task[None] | None = None

    async def put(self, payload: dict[str, Any]) -> str:
        """Sign ``payload`` and store it; its CID."""
        data = sign_record(self.identity, payload)
        return (await self._store.put_bytes(data, max_size=RECORD_MAX_BYTES)).entry.cid

    async def receipt(self, step: Step, output: ContentEntry) -> SignedRecord:
        """The signed receipt of a step this node computed. Its CID is computed here; the bytes
        go to IPFS later (:meth:`publish`), unless they exceed one IPFS block."""
        data = sign_record(
            self.identity,
            {
                "kind": "artdag/step-receipt",
                "version": 1,
                "cache_id": step.cache_id,
                "step": step.node_id,
                "type": step.type,
                "type_version": step.type_version,
                "config": dict(step.config),
                "inputs": list(step.inputs),
                "runtime": dict(step.runtime),
                "output": _content(output),
                "computed_at": utc_now(),
            },
        )
        if len(data) <= LEAF_MAX_BYTES:
            return SignedRecord(leaf_cid(data), data)
        stored = await self._store.put_bytes(data, max_size=RECORD_MAX_BYTES)  # several blocks
        return SignedRecord(stored.entry.cid, data)

    async def publish(self, cids: list[str], *, skip_unknown: bool = False) -> None:
        """Make step receipts retrievable: add to IPFS (pinned, indexed) the ones this node's
        content index does not hold yet, from their bytes in Redis. NotFound if one has none,
        unless ``skip_unknown`` (the rest are added all the same)."""
        index = self._store.index
        held = await index.content_ids_for_cids(cids)
        missing = sorted({cid for cid, content_id in zip(cids, held, strict=True) if content_id is None})
        if not missing:
            return
        found = dict(zip(missing, await self._steps.receipts(missing), strict=True))
        lost = [cid for cid, blob in found.items() if blob is None]
        if lost and not skip_unknown:
            raise NotFound(f"step receipts {', '.join(lost)} are recorded nowhere on this node")
        known = {cid: blob for cid, blob in found.items() if blob is not None}
        if not known:
            return
        added = await self._store.add_records(list(known.values()))
        wrong = [cid for cid, entry in zip(known, added, strict=True) if entry.cid != cid]
        if wrong:  # the daemon imports with other settings than the node computes CIDs with
            raise IpfsError(f"IPFS gave receipts {', '.join(wrong)} other CIDs", command="add")

    def publish_soon(self, cid: str) -> None:
        """Queue a committed receipt for :meth:`publish` in the background."""
        self._queued.append(cid)
        if self._publishing is None or self._publishing.done():
            self._publishing = asyncio.create_task(self._drain(), name="publish-receipts")

    async def _drain(self) -> None:
        while self._queued:
            batch, self._queued = self._queued, []
            try:  # a receipt not written (its step was recorded already) is skipped
                await self.publish(batch, skip_unknown=True)
            except Exception:  # the bytes stay in Redis: the run's finisher adds them
                log.exception("receipts not added to IPFS yet; a run's finisher will add them")

    async def close(self) -> None:
        """Finish adding the queued receipts (the node is stopping)."""
        if self._publishing is not None:
            await asyncio.gather(self._publishing, return_exceptions=True)

    async def plan(self, plan: Plan) -> str:
        return await self.put({"kind": "artdag/plan", "version": 1, **plan.record()})

    async def descriptors(self) -> dict[str, str]:
        """CIDs of this node's software and hardware descriptor documents: stored once, and
        again only if they were deleted since."""
        stored = list(self._descriptors.values())
        if stored and all(await self._store.index.content_ids_for_cids(stored)):
            return dict(self._descriptors)
        software = {
            "kind": "artdag/software",
            "artdag-node": __version__,
            "python": platform.python_version(),
            "tools": tool_versions(),
            "effects": {name: effect.version for name, effect in sorted(EFFECTS.items())},
        }
        hardware = {
            "kind": "artdag/hardware",
            "machine": platform.machine(),
            "cpu": _cpu_model(),
            "cpu_class": cpu_class(),  # what byte-identical outputs are promised between
            "cpus": os.cpu_count(),
            "os": platform.platform(),
        }
        self._descriptors = {"software": await self.put(software), "hardware": await self.put(hardware)}
        return dict(self._descriptors)


@dataclass(frozen=True)
class RunFacts:
    """What the provenance of a finished run states."""

    run_id: str
    rendered_by: str
    output_name: str
    output: ContentEntry
    inputs: list[tuple[str, ContentEntry]]  # (input name, content)
    recipe_name: str
    recipe: ContentEntry
    plan_cid: str
    plan: Plan
    receipts: list[str]
    expansions: list[str] = field(default_factory=list)  # CIDs of the plan's expansion records


async def write_provenance(writer: RecordWriter, facts: RunFacts) -> str:
    """Sign and store a finished run's provenance record; its CID."""
    return await writer.put(
        {
            "kind": "artdag/provenance",
            "version": 1,
            "run_id": facts.run_id,
            "rendered_at": utc_now(),
            "rendered_by": facts.rendered_by,
            "output": {"name": facts.output_name, **_content(facts.output)},
            "inputs": [{"name": name, **_content(entry)} for name, entry in facts.inputs],
            "effects": effects_used(facts.plan),
            "recipe": {"name": facts.recipe_name, **_content(facts.recipe)},
            "plan": {"plan_id": facts.plan.plan_id, "cid": facts.plan_cid},
            "infrastructure": await writer.descriptors(),
            "receipts": facts.receipts,
            **({"expansions": facts.expansions} if facts.expansions else {}),
        }
    )


def effects_used(plan: Plan) -> list[dict[str, Any]]:
    """The effects a plan runs: name, version and hash of each, by name."""
    used = sorted({str(step.config["effect"]) for step in plan.steps if step.type == "EFFECT"})
    return [{"name": name, "version": EFFECTS[name].version, "hash": EFFECTS[name].hash} for name in used]


def _content(entry: ContentEntry) -> dict[str, Any]:
    return {
        "cid": entry.cid,
        "sha3_256": entry.content_id,
        "size": entry.size,
        "media_type": entry.media_type,
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


@dataclass
class Verdict:
    """The outcome of verifying a provenance record: ``ok`` only if nothing failed."""

    cid: str
    signer: str = ""
    problems: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    evicted: list[str] = field(default_factory=list)  # intermediates the disk budget let go: not problems

    @property
    def ok(self) -> bool:
        return not self.problems


async def verify_provenance(
    ipfs: IpfsClient, cid: str, trusted: set[str] | None = None, evicted: Evicted | None = None
) -> Verdict:
    """Check a provenance record: its signature (by a trusted node, if given); the plan, every
    receipt and descriptor (signed, of the right kind, and agreeing with each other: one receipt
    per computed step of the plan, the last one naming the output); every CID retrievable; and
    the SHA3-256 and size of the output, the inputs and the recipe. ``evicted``, when given,
    says which intermediate outputs a disk budget let go: reported as such, not as problems."""
    verdict = Verdict(cid)
    record = await _verified(ipfs, cid, trusted, verdict, label="provenance", kind="artdag/provenance")
    if record is None:
        return verdict
    verdict.signer = str(record.get("signer", ""))
    plan = await _check_plan(ipfs, record, trusted, verdict)
    if plan is not None:
        receipts = await _check_receipts(ipfs, record, plan, trusted, verdict)
        if evicted is not None:
            await _report_evicted(receipts, str(plan.get("output")), evicted, verdict)
    for label, content in _contents(record):
        await _check_content(ipfs, label, content, verdict)
    for label, kind in (("software", "artdag/software"), ("hardware", "artdag/hardware")):
        ref = _field(record, "infrastructure").get(label)
        await _verified(ipfs, str(ref), trusted, verdict, label=label, kind=kind)
    return verdict


def _field(record: dict[str, Any], name: str) -> dict[str, Any]:
    value = record.get(name)
    return value if isinstance(value, dict) else {}


def _contents(record: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    inputs = record.get("inputs")
    if not isinstance(inputs, list):
        inputs = []
    pairs = [("output", _field(record, "output")), ("recipe", _field(record, "recipe"))]
    return pairs + [(f"input {item.get('name')}", item) for item in inputs if isinstance(item, dict)]


async def _check_plan(
    ipfs: IpfsClient, record: dict[str, Any], trusted: set[str] | None, verdict: Verdict
) -> dict[str, Any] | None:
    stated = _field(record, "plan")
    plan = await _verified(ipfs, str(stated.get("cid")), trusted, verdict, label="plan", kind="artdag/plan")
    if plan is None:
        return None
    if plan.get("plan_id") != stated.get("plan_id"):
        verdict.problems.append(
            f"plan {stated.get('cid')} has id {plan.get('plan_id')}, record says {stated.get('plan_id')}"
        )
    if plan.get("recipe_id") != _field(record, "recipe").get("sha3_256"):
        verdict.problems.append("the plan was made from another recipe than the record names")
    return plan


async def _report_evicted(
    receipts: dict[str, dict[str, Any]], output_step: str, evicted: Evicted, verdict: Verdict
) -> None:
    """The intermediate outputs (every receipt's but the last step's) a disk budget let go."""
    outputs = {
        str(_field(receipt, "output").get("cid")): cache_id
        for cache_id, receipt in receipts.items()
        if cache_id != output_step
    }
    for cid in sorted(await evicted(sorted(outputs))):
        verdict.evicted.append(
            f"step {outputs[cid]}: its output {cid} was evicted by the disk budget (its receipt "
            "verifies; it is computed again when a run needs it)"
        )


async def _check_receipts(
    ipfs: IpfsClient, record: dict[str, Any], plan: dict[str, Any], trusted: set[str] | None, verdict: Verdict
) -> dict[str, dict[str, Any]]:
    """Check the receipts against the plan; the valid ones by cache id."""
    steps = {
        str(step.get("cache_id")): step for step in plan.get("steps", []) if step.get("type") != "SOURCE"
    }
    expansions = await _expansions(ipfs, record, steps, verdict)
    receipts: dict[str, dict[str, Any]] = {}
    for receipt_cid in record.get("receipts", []) if isinstance(record.get("receipts"), list) else []:
        receipt = await _verified(
            ipfs, str(receipt_cid), trusted, verdict, label="receipt", kind="artdag/step-receipt"
        )
        if receipt is not None:
            receipts[str(receipt.get("cache_id"))] = receipt
    missing = sorted(set(steps) - set(receipts))
    extra = sorted(set(receipts) - set(steps))
    if missing or extra:
        verdict.problems.append(
            f"receipts do not match the plan's steps (missing {missing}, not in plan {extra})"
        )
    for cache_id, receipt in receipts.items():
        if cache_id in steps and list(receipt.get("inputs", [])) != list(steps[cache_id].get("inputs", [])):
            verdict.problems.append(f"receipt for {cache_id} names other inputs than the plan")
    for cache_id, cid in expansions.items():
        if _field(receipts.get(cache_id, {}), "output").get("cid") != cid:
            verdict.problems.append(f"expansion {cid} is not what its step {cache_id} produced")
    final = receipts.get(str(plan.get("output")), {})
    if _field(final, "output").get("cid") != _field(record, "output").get("cid"):
        verdict.problems.append("the output is not what the plan's last step produced")
    return receipts


async def _expansions(
    ipfs: IpfsClient, record: dict[str, Any], steps: dict[str, dict[str, Any]], verdict: Verdict
) -> dict[str, str]:
    """Splice the steps each expansion record added into ``steps`` (``node.executor.expansion``);
    {EXPAND step cache id: the record's CID}."""
    found: dict[str, str] = {}
    cids = record.get("expansions", [])
    for cid in cids if isinstance(cids, list) else []:
        try:
            expansion = await asyncio.to_thread(json.loads, await _fetch(ipfs, normalize_cid(str(cid))))
            added, expand_id, output = (
                expansion["steps"],
                str(expansion["expansion"]),
                str(expansion["output"]),
            )
        except (NodeError, ValueError, KeyError, TypeError) as exc:
            verdict.problems.append(f"expansion {cid} is not readable: {exc}")
            continue
        found[expand_id] = str(cid)
        steps.update({str(item.get("cache_id")): item for item in added if isinstance(item, dict)})
        for step in steps.values():
            if isinstance(step.get("config"), dict) and step["config"].get("expansion") == expand_id:
                step["inputs"] = [expand_id, output]
        verdict.checked.append(f"expansion {cid}: {len(added)} steps added to the plan")
    return found


async def _fetch(ipfs: IpfsClient, cid: str) -> bytes:
    try:
        return await ipfs.cat_all(cid, RECORD_MAX_BYTES)
    except ContentTooLarge:
        raise RecordError(f"larger than the {RECORD_MAX_BYTES} bytes a record may have") from None


async def fetch_signed(
    ipfs: IpfsClient, cid: str, kind: str, trusted: set[str] | None = None
) -> dict[str, Any]:
    """The signed record of ``kind`` at ``cid`` from this node's daemon, its signature checked
    (by a ``trusted`` signer, if given); RecordError if it is not such a record, the IPFS
    errors (ContentNotFound ...) if it is not retrievable."""
    record = verify_record(await _fetch(ipfs, normalize_cid(cid)), trusted)
    if record.get("kind") != kind:
        raise RecordError(f"{cid} is a {record.get('kind')!r} record, not {kind}")
    return record


async def _verified(
    ipfs: IpfsClient, cid: str, trusted: set[str] | None, verdict: Verdict, *, label: str, kind: str
) -> dict[str, Any] | None:
    try:
        record = verify_record(await _fetch(ipfs, normalize_cid(cid)), trusted)
    except RecordError as exc:
        verdict.problems.append(f"{label} {cid}: {exc.message}")
        return None
    except NodeError as exc:
        verdict.problems.append(f"{label} {cid} not retrievable: {exc.message}")
        return None
    if record.get("kind") != kind:
        verdict.problems.append(f"{label} {cid} is a {record.get('kind')!r} record, not {kind}")
        return None
    verdict.checked.append(f"{label} {cid} signature valid ({record['signer']})")
    return record


async def _check_content(ipfs: IpfsClient, label: str, content: dict[str, Any], verdict: Verdict) -> None:
    cid, expected = str(content.get("cid", "")), content.get("sha3_256")
    hasher = hashlib.sha3_256()
    size = 0
    try:
        async with ipfs.cat(normalize_cid(cid)) as chunks:
            async for chunk in chunks:
                size += len(chunk)
                await asyncio.to_thread(hasher.update, chunk)
    except NodeError as exc:
        verdict.problems.append(f"{label} {cid} not retrievable: {exc.message}")
        return
    if hasher.hexdigest() != expected:
        verdict.problems.append(f"{label} {cid} hashes to {hasher.hexdigest()}, record says {expected}")
    elif "size" in content and content["size"] != size:
        verdict.problems.append(f"{label} {cid} has {size} bytes, record says {content['size']}")
    else:
        verdict.checked.append(f"{label} {cid} matches its sha3_256")
