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
from node.media.kinds import kind_of
from node.records import RecordError
from node.store.cid import normalize_cid
from node.store.errors import InvalidCid
from node.sync.connection import redis_errors
from node.sync.errors import InvalidId
from node.sync.index import _PUT_STEP_IF_ABSENT, ContentEntry, StepEntry, step_write
from node.sync.keys import Keys, check_content_id

INDEX_MAX_BYTES = 256 * 1024**2
KINDS = {"runs": "artdag/run-index", "steps": "artdag/step-index", "contents": "artdag/content-index"}
FINAL_EVENTS = {"completed": "run_completed", "failed": "run_failed", "cancelled": "run_cancelled"}
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
        self._put_step = client.register_script(_PUT_STEP_IF_ABSENT)

    # --- out ------------------------------------------------------------------------------
    async def export(self) -> dict[str, bytes]:
        """The three index documents' canonical bytes, by name."""
        documents = {
            "runs": {"runs": await self._runs()},
            "steps": {"steps": await self._steps()},
            "contents": await self._contents(),
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

    async def _listing(self, key: str) -> list[tuple[str, float]]:
        with redis_errors():
            listed: list[Any] = await self._redis.zrange(key, 0, -1, withscores=True)
        return [(str(member), float(score)) for member, score in listed]

    async def _steps(self) -> list[dict[str, Any]]:
        listed = await self._listing(self._keys.steps)
        found = []
        for batch in _batches(sorted(cache_id for cache_id, _ in listed)):  # in one order, whenever recorded
            rows = await self._hashes([self._keys.step(cache_id) for cache_id in batch])
            found += [
                StepEntry.from_hash(cache_id, row).__dict__
                for cache_id, row in zip(batch, rows, strict=True)
                if row
            ]
        return found

    async def _runs(self) -> list[dict[str, Any]]:
        listed = await self._listing(self._keys.runs)
        found = []
        for batch in _batches(listed):
            with redis_errors():
                records = await self._redis.mget([self._keys.run(run_id) for run_id, _ in batch])
            runs = [
                (json.loads(raw), submitted)
                for raw, (_, submitted) in zip(records, batch, strict=True)
                if raw
            ]
            with redis_errors():
                plans = (
                    await self._redis.mget([self._keys.plan(run["plan_id"]) for run, _ in runs])
                    if runs
                    else []
                )
            found += [
                {"run": run, "plan": json.loads(plan) if plan else None, "submitted": submitted}
                for (run, submitted), plan in zip(runs, plans, strict=True)
            ]
        return found

    async def _contents(self) -> dict[str, Any]:
        listed = await self._listing(self._keys.contents)
        contents = []
        for batch in _batches(listed):
            with redis_errors():
                async with self._redis.pipeline(transaction=False) as pipe:
                    for content_id, _ in batch:
                        pipe.hgetall(self._keys.content(content_id))
                        pipe.smembers(self._keys.content_owners(content_id))
                        pipe.smembers(self._keys.content_runs(content_id))
                    rows = await pipe.execute()
            for index, (content_id, _) in enumerate(batch):
                fields, owners, runs = rows[3 * index : 3 * index + 3]
                if fields:
                    entry = ContentEntry.from_hash(content_id, fields)
                    contents.append({**entry.__dict__, "owners": sorted(owners), "runs": sorted(runs)})
        recipes = []
        for batch in _batches(await self._listing(self._keys.recipes)):
            rows = await self._hashes([self._keys.recipe(cid) for cid, _ in batch])
            recipes += [
                {"cid": cid, "fields": row, "uploaded": uploaded}
                for (cid, uploaded), row in zip(batch, rows, strict=True)
                if row
            ]
        with redis_errors():
            assets = await self._redis.hgetall(self._keys.assets)
        return {"contents": contents, "assets": dict(assets), "recipes": recipes}

    async def _hashes(self, keys: list[str]) -> list[dict[str, str]]:
        with redis_errors():
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hgetall(key)
                return list(await pipe.execute())

    # --- in -------------------------------------------------------------------------------
    async def restore(self, documents: dict[str, bytes]) -> Restored:
        """Add to Redis what the node's own index documents hold and Redis lacks (malformed
        entries are skipped and counted in the log)."""
        parsed = await asyncio.to_thread(_parse_all, documents)
        contents = await self._restore_contents(parsed)
        steps = await self._restore_steps(parsed.steps)
        runs = await self._restore_runs(parsed.runs)
        if parsed.skipped:
            log.warning("restore: %d malformed index entries skipped", parsed.skipped)
        return Restored(runs=runs, steps=steps, contents=contents)

    async def _restore_steps(self, entries: list[StepEntry]) -> int:
        added = 0
        for batch in _batches(entries):
            with redis_errors():
                async with self._redis.pipeline(transaction=False) as pipe:
                    for entry in batch:
                        keys, args = step_write(self._keys, entry, b"")
                        await self._put_step(keys=keys, args=args, client=pipe)
                    added += sum(int(done) for done in await pipe.execute())
        return added

    async def _restore_contents(self, parsed: _Parsed) -> int:
        added = 0
        for batch in _batches(parsed.contents):
            with redis_errors():
                async with self._redis.pipeline(transaction=False) as pipe:
                    for entry, _, _ in batch:
                        pipe.zadd(self._keys.contents, {entry.content_id: entry.created}, nx=True)
                    added += sum(int(new) for new in await pipe.execute())
                async with self._redis.pipeline(transaction=False) as pipe:
                    for entry, owners, runs in batch:
                        self._put_content(pipe, entry, owners, runs)
                    await pipe.execute()
        with redis_errors():
            async with self._redis.pipeline(transaction=False) as pipe:
                for name, content_id in parsed.assets.items():
                    pipe.hsetnx(self._keys.assets, name, content_id)
                for cid, fields, uploaded in parsed.recipes:
                    for name, value in fields.items():
                        pipe.hsetnx(self._keys.recipe(cid), name, value)
                    pipe.zadd(self._keys.recipes, {cid: uploaded}, nx=True)
                await pipe.execute()
        return added

    def _put_content(self, pipe: Any, entry: ContentEntry, owners: list[str], runs: list[str]) -> None:
        key = self._keys.content(entry.content_id)
        fields = {"cid": entry.cid, "size": str(entry.size), "media_type": entry.media_type}
        for name, value in {**fields, "created": repr(entry.created)}.items():
            pipe.hsetnx(key, name, value)
        pipe.setnx(self._keys.cid(entry.cid), entry.content_id)
        if owners:
            pipe.sadd(self._keys.content_owners(entry.content_id), *owners)
        if runs:
            pipe.sadd(self._keys.content_runs(entry.content_id), *runs)
        kind = kind_of(entry.media_type)
        if kind is not None:
            pipe.zadd(self._keys.media, {entry.content_id: entry.created}, nx=True)
            pipe.zadd(self._keys.media_of_kind(kind), {entry.content_id: entry.created}, nx=True)

    async def _restore_runs(self, items: list[_Run]) -> int:
        added = 0
        for batch in _batches(items):
            with redis_errors():
                async with self._redis.pipeline(transaction=False) as pipe:
                    for run in batch:
                        pipe.set(self._keys.run(run.run_id), json.dumps(run.record), nx=True)
                        if run.plan is not None:
                            pipe.set(self._keys.plan(run.plan_id), json.dumps(run.plan), nx=True)
                    written = iter(await pipe.execute())
            created = []
            for run in batch:
                if next(written):
                    created.append(run)
                if run.plan is not None:
                    next(written)
            await self._list_runs(created)
            added += len(created)
        return added

    async def _list_runs(self, runs: list[_Run]) -> None:
        """List the runs just written (and unfinished ones as active: they resume); a finished
        run's stream gets its final event, so a client following it sees it end."""
        with redis_errors():
            async with self._redis.pipeline(transaction=False) as pipe:
                for run in runs:
                    pipe.zadd(self._keys.runs, {run.run_id: run.submitted}, nx=True)
                    final = FINAL_EVENTS.get(str(run.record.get("status")))
                    if final is None:
                        pipe.zadd(self._keys.runs_active, {run.run_id: run.submitted}, nx=True)
                    else:
                        data = {
                            key: run.record.get(key)
                            for key in ("status", "output", "provenance_cid", "error")
                        }
                        pipe.xadd(self._keys.events(run.run_id), {"kind": final, "data": json.dumps(data)})
                await pipe.execute()


@dataclass(frozen=True)
class _Run:
    run_id: str
    plan_id: str
    record: dict[str, Any]
    plan: dict[str, Any] | None
    submitted: float


@dataclass
class _Parsed:
    """The well-formed entries of a node's three index documents."""

    steps: list[StepEntry]
    runs: list[_Run] = field(default_factory=list)
    contents: list[tuple[ContentEntry, list[str], list[str]]] = field(default_factory=list)
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
            record = dict(item["run"])
            plan = dict(item["plan"]) if item.get("plan") is not None else None
            run_id, plan_id = str(record["run_id"]), check_content_id(str(record["plan_id"]))
            parsed.runs.append(_Run(run_id, plan_id, record, plan, float(item["submitted"])))
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


def _content_entry(item: dict[str, Any]) -> tuple[ContentEntry, list[str], list[str]]:
    entry = ContentEntry(
        content_id=check_content_id(str(item["content_id"])),
        cid=normalize_cid(str(item["cid"])),
        size=int(item["size"]),
        media_type=str(item["media_type"]),
        created=float(item["created"]),
    )
    return entry, [str(owner) for owner in item.get("owners", [])], [str(run) for run in item.get("runs", [])]


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
