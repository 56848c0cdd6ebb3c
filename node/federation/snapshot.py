"""The node's indexes as documents: written from Redis for its published state, read back
into Redis when the node starts on an empty database, and a peer's step index read for merging.

Three documents, each canonical JSON naming the node it describes (so two nodes never share an
index CID, and unpinning one's old index never touches the other's):

- ``runs``: every run record with its plan and submission time;
- ``steps``: every step entry (cache id -> output CID, content id, size, media type, receipt);
- ``contents``: every content entry with its owners and runs, asset names, uploaded recipes.

Reading back only adds what is missing: nothing present in Redis is overwritten.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis.asyncio as aioredis

from node.canonical import canonical_json
from node.records import RecordError
from node.store.cid import normalize_cid
from node.store.errors import InvalidCid
from node.sync.connection import hashes, redis_errors, scored_members
from node.sync.errors import InvalidId
from node.sync.index import ContentEntry, ContentIndex, HeldContent, StepEntry, StepIndex
from node.sync.keys import Keys, check_content_id
from node.sync.run_index import RunIndex, StoredRun
from node.sync.run_status import read_record

INDEX_MAX_BYTES = 256 * 1024**2
KINDS = {"runs": "artdag/run-index", "steps": "artdag/step-index", "contents": "artdag/content-index"}
BATCH = 500
log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Restored:
    """How many entries a restore added (those already in Redis are not counted)."""

    runs: int = 0
    steps: int = 0
    contents: int = 0


class Snapshot:
    """Writes a node's indexes out of Redis, and reads them back in."""

    def __init__(self, client: aioredis.Redis, keys: Keys, node_id: str) -> None:
        self._redis = client
        self._keys = keys
        self._node_id = node_id
        self._contents = ContentIndex(client, keys)
        self._steps = StepIndex(client, keys)
        self._runs = RunIndex(client, keys)

    # --- out ------------------------------------------------------------------------------
    async def export(self) -> dict[str, bytes]:
        """The three index documents' canonical bytes, by name."""
        documents = {
            "runs": {"runs": await self._run_items()},
            "steps": {"steps": await self._step_items()},
            "contents": await self._content_items(),
        }
        written = {
            name: await asyncio.to_thread(canonical_json, self._framed(name, body))
            for name, body in documents.items()
        }
        for name, data in written.items():
            if len(data) > INDEX_MAX_BYTES:  # recovery and peers would refuse it
                raise RecordError(f"the {name} index is {len(data)} bytes, over {INDEX_MAX_BYTES}")
        return written

    def _framed(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return {"kind": KINDS[name], "version": 1, "node_id": self._node_id, **body}

    async def _step_items(self) -> list[dict[str, Any]]:
        listed = sorted(
            cache_id for cache_id, _ in await self._steps.listed()
        )  # one order, whenever recorded
        found = []
        for batch in _batches(listed):
            found += [entry.__dict__ for entry in await self._steps.get_many(batch)]
        return found

    async def _run_items(self) -> list[dict[str, Any]]:
        found = []
        for batch in _batches(await self._runs.listed()):
            found += [
                {"run": run.record, "plan": run.plan, "submitted": run.submitted}
                for run in await self._runs.stored(batch)
            ]
        return found

    async def _content_items(self) -> dict[str, Any]:
        contents = []
        for batch in _batches(await self._contents.listed()):
            contents += [
                {**item.entry.__dict__, "owners": item.owners, "runs": item.runs}
                for item in await self._contents.held(batch)
            ]
        recipes = []
        for batch in _batches(await scored_members(self._redis, self._keys.recipes)):
            rows = await hashes(self._redis, [self._keys.recipe(cid) for cid, _ in batch])
            recipes += [
                {"cid": cid, "fields": row, "uploaded": uploaded}
                for (cid, uploaded), row in zip(batch, rows, strict=True)
                if row
            ]
        return {"contents": contents, "assets": await self._contents.assets(), "recipes": recipes}

    # --- in -------------------------------------------------------------------------------
    async def restore(self, documents: dict[str, bytes]) -> Restored:
        """Add to Redis what the node's own index documents hold and Redis lacks (malformed
        entries are skipped and counted in the log)."""
        parsed = await asyncio.to_thread(_parse_all, documents)
        contents = 0
        for held in _batches(parsed.contents):
            contents += await self._contents.restore(held)
        await self._contents.restore_assets(parsed.assets)
        await self._restore_recipes(parsed.recipes)
        steps = 0
        for entries in _batches(parsed.steps):
            steps += await self._steps.restore(entries)
        runs = 0
        for stored in _batches(parsed.runs):
            runs += await self._runs.restore(stored)
        if parsed.skipped:
            log.warning("restore: %d malformed index entries skipped", parsed.skipped)
        return Restored(runs=runs, steps=steps, contents=contents)

    async def _restore_recipes(self, recipes: list[tuple[str, dict[str, str], float]]) -> None:
        with redis_errors():
            async with self._redis.pipeline(transaction=False) as pipe:
                for cid, fields, uploaded in recipes:
                    for name, value in fields.items():
                        pipe.hsetnx(self._keys.recipe(cid), name, value)
                    pipe.zadd(self._keys.recipes, {cid: uploaded}, nx=True)
                await pipe.execute()


@dataclass
class _Parsed:
    """The well-formed entries of a node's three index documents."""

    steps: list[StepEntry]
    runs: list[StoredRun] = field(default_factory=list)
    contents: list[HeldContent] = field(default_factory=list)
    assets: dict[str, str] = field(default_factory=dict)
    recipes: list[tuple[str, dict[str, str], float]] = field(default_factory=list)
    skipped: int = 0


_MALFORMED = (KeyError, TypeError, ValueError, AttributeError, InvalidCid, InvalidId)


def _parse_all(documents: dict[str, bytes]) -> _Parsed:
    """Read and check the three documents (blocking: run in a thread)."""
    runs_doc, steps_doc, contents_doc = (
        read_index(name, documents[name]) for name in ("runs", "steps", "contents")
    )
    parsed = _Parsed(steps=read_steps(steps_doc))
    parsed.skipped = len(steps_doc.get("steps", [])) - len(parsed.steps)
    for item in runs_doc.get("runs", []):
        try:
            record = read_record(item["run"])
            plan = dict(item["plan"]) if item.get("plan") is not None else None
            record["run_id"], record["plan_id"] = (
                str(record["run_id"]),
                check_content_id(str(record["plan_id"])),
            )
            parsed.runs.append(StoredRun(record, plan, float(item["submitted"])))
        except _MALFORMED:
            parsed.skipped += 1
    for item in contents_doc.get("contents", []):
        try:
            parsed.contents.append(_content_entry(item))
        except _MALFORMED:
            parsed.skipped += 1
    for name, content_id in dict(contents_doc.get("assets", {})).items():
        try:
            parsed.assets[str(name)] = check_content_id(str(content_id))
        except _MALFORMED:
            parsed.skipped += 1
    for recipe in contents_doc.get("recipes", []):
        try:
            fields = {str(key): str(value) for key, value in dict(recipe["fields"]).items()}
            parsed.recipes.append((normalize_cid(str(recipe["cid"])), fields, float(recipe["uploaded"])))
        except _MALFORMED:
            parsed.skipped += 1
    return parsed


def read_index(name: str, data: bytes) -> dict[str, Any]:
    """An index document's JSON, checked for its kind; RecordError if it is not one. Blocking."""
    if len(data) > INDEX_MAX_BYTES:
        raise RecordError(f"the {name} index is over {INDEX_MAX_BYTES} bytes")
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise RecordError(f"the {name} index is not JSON: {exc}") from exc
    if not isinstance(document, dict) or document.get("kind") != KINDS[name] or document.get("version") != 1:
        raise RecordError(f"not a version 1 {name} index")
    return document


def read_steps(document: dict[str, Any]) -> list[StepEntry]:
    """The well-formed entries of a step index (malformed ones are skipped)."""
    entries = []
    for item in document.get("steps", []):
        try:
            entries.append(
                StepEntry(
                    cache_id=_hex(item["cache_id"]),
                    cid=normalize_cid(str(item["cid"])),
                    content_id=check_content_id(str(item["content_id"])),
                    size=int(item["size"]),
                    media_type=str(item["media_type"]),
                    receipt_cid=normalize_cid(item["receipt_cid"]) if item.get("receipt_cid") else "",
                    node=str(item.get("node", "")),
                )
            )
        except (KeyError, TypeError, ValueError, InvalidCid, InvalidId):
            continue
    return entries


def _content_entry(item: dict[str, Any]) -> HeldContent:
    entry = ContentEntry(
        content_id=check_content_id(str(item["content_id"])),
        cid=normalize_cid(str(item["cid"])),
        size=int(item["size"]),
        media_type=str(item["media_type"]),
        created=float(item["created"]),
    )
    return HeldContent(
        entry, [str(owner) for owner in item.get("owners", [])], [str(run) for run in item.get("runs", [])]
    )


def _hex(value: Any) -> str:
    return check_content_id(str(value))  # cache ids have the content id's form: SHA3-256 hex


def _batches(items: Iterable[T]) -> Iterable[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch
