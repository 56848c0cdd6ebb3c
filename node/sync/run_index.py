"""The run index: run records (``run:{id}``, JSON), their plans (``plan:{id}``), the listing of
every run (``runs``, by submission time) and of unfinished ones (``runs:active``, resumed when
a node starts). Every writer of runs goes through here; a run's events are ``RunEvents``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from node.errors import Conflict, NotFound
from node.sync.connection import redis_errors, scored_members
from node.sync.keys import Keys
from node.sync.run_events import RunEvents, entry, final_event
from node.sync.run_status import RunRecord, RunStatus, is_final, read_record
from node.sync.usage import USAGE_LUA

LIST_BATCH = 200
ENDING_FIELDS = ("status", "output", "provenance_cid", "attestation_cid", "error")  # a restored final event's
_FINAL_LUA = " or ".join(f"status == '{status}'" for status in RunStatus.finals())

# Move a run to a final status only if it is not final already (a completion and a cancel can
# race); the run leaves runs:active (KEYS[2]) and its owner's (KEYS[3]) in the same step, and a
# completed run's output (ARGV[3], its entry KEYS[5]) is held by its owner (usage KEYS[4]) while
# the run is kept. Returns the record now in force.
_FINISH = (
    USAGE_LUA
    + f"""
local current = redis.call('GET', KEYS[1])
if not current then return false end
local status = cjson.decode(current)['status']
if {_FINAL_LUA} then return current end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[2])
if ARGV[3] ~= '' then hold(KEYS[4], ARGV[3], redis.call('HGET', KEYS[5], 'size') or '0') end
return ARGV[1]
"""
)

# A restored completed run's owner holds its output (content ARGV[1], its entry KEYS[2]) again,
# in their usage (KEYS[1]).
_HOLD_OUTPUT = USAGE_LUA + "hold(KEYS[1], ARGV[1], redis.call('HGET', KEYS[2], 'size') or '0')"

# Add a run (record ARGV[1], plan ARGV[2], id ARGV[3], at ARGV[4]) unless its owner already has
# ARGV[5] unfinished ones (0: no limit). KEYS: run, plan, runs:active, runs, runs:active:{owner}.
# Returns how many the owner had when refused (nothing written), else -1.
_ADD = """
local limit = tonumber(ARGV[5])
local unfinished = redis.call('ZCARD', KEYS[5])
if limit > 0 and unfinished >= limit then return unfinished end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[3])
redis.call('ZADD', KEYS[5], ARGV[4], ARGV[3])
return -1
"""

# Delete a finished run's record, events and listings (KEYS[1..6]: run, events, reported, runs,
# runs:active, runs:active:{owner}; ARGV[2]: the run id); it stops holding its content (their
# runs sets are KEYS[8..]), and its owner's hold on its output (ARGV[1], '' for none; their
# usage is KEYS[7]) is released.
_DELETE = (
    USAGE_LUA
    + """
local run_id = ARGV[#ARGV]
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('ZREM', KEYS[4], run_id)
redis.call('ZREM', KEYS[5], run_id)
redis.call('ZREM', KEYS[6], run_id)
for i = 8, #KEYS do redis.call('SREM', KEYS[i], run_id) end
if ARGV[1] ~= '' then release(KEYS[7], ARGV[1]) end
return 0
"""
)

# Move a queued run to running (a run already running, or finished, stays as it is).
_START = f"""
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local record = cjson.decode(current)
if record['status'] ~= '{RunStatus.QUEUED}' then return 0 end
record['status'] = '{RunStatus.RUNNING}'
record['updated'] = ARGV[1]
record['started'] = ARGV[1]
redis.call('SET', KEYS[1], cjson.encode(record))
return 1
"""


class RunNotFound(NotFound):
    code = "run_not_found"


class OwnerBusy(Exception):
    """The owner already has as many unfinished runs as they may (nothing was written)."""

    def __init__(self, unfinished: int) -> None:
        super().__init__(f"{unfinished} unfinished runs")
        self.unfinished = unfinished


@dataclass(frozen=True)
class StoredRun:
    """A run as a snapshot holds it: its record, its plan (if kept) and when it was submitted."""

    record: RunRecord
    plan: dict[str, Any] | None
    submitted: float


class RunIndex:
    """Run records, plans and listings in Redis."""

    def __init__(self, client: aioredis.Redis, keys: Keys, followers: aioredis.Redis | None = None) -> None:
        """``followers``: a client of their own for those who follow runs' events (blocking
        reads), so that they never take the connections requests and runs need."""
        self._redis = client
        self._keys = keys
        self.events = RunEvents(client, keys, followers)
        self._finish_script = client.register_script(_FINISH)
        self._start_script = client.register_script(_START)
        self._add_script = client.register_script(_ADD)
        self._delete_script = client.register_script(_DELETE)
        self._hold_output = client.register_script(_HOLD_OUTPUT)

    async def add(self, record: RunRecord, plan: dict[str, Any], *, run_limit: int = 0) -> None:
        """Store a new run and its plan, listed (as active) from now; OwnerBusy (nothing
        written) if its owner already has ``run_limit`` unfinished runs (0: no limit)."""
        run_id, owner = record["run_id"], record["owner"]
        keys = [
            self._keys.run(run_id),
            self._keys.plan(record["plan_id"]),
            self._keys.runs_active,
            self._keys.runs,
            self._keys.runs_active_of(owner),
        ]
        args = [json.dumps(record), json.dumps(plan), run_id, repr(time.time()), str(run_limit)]
        with redis_errors():
            unfinished = int(await self._add_script(keys=keys, args=args))
        if unfinished >= 0:
            raise OwnerBusy(unfinished)

    async def get(self, run_id: str) -> RunRecord:
        """The run's record; RunNotFound if there is none."""
        with redis_errors():
            raw = await self._redis.get(self._keys.run(run_id))
        if raw is None:
            raise RunNotFound(f"no run {run_id!r}", run_id=run_id)
        return _record(raw)

    async def plan(self, plan_id: str) -> dict[str, Any] | None:
        """A plan's record (its steps with their node ids, types, levels and input cache ids),
        or None if this node no longer has it."""
        with redis_errors():
            raw = await self._redis.get(self._keys.plan(plan_id))
        return dict(json.loads(raw)) if raw else None

    async def start(self, run_id: str, now: str) -> None:
        """Mark a queued run running (from ``now``, an ISO time)."""
        with redis_errors():
            await self._start_script(keys=[self._keys.run(run_id)], args=[now])

    async def finish(self, wanted: RunRecord) -> tuple[RunRecord, bool]:
        """Write ``wanted`` (with a final status) unless the run has a final status already,
        or no record any more; the record in force afterwards, and whether ``wanted`` was
        written."""
        encoded = json.dumps(wanted)
        run_id, owner, output = wanted["run_id"], wanted["owner"], wanted["output"]
        held = output["content_id"] if output and wanted["status"] == RunStatus.COMPLETED else ""
        keys = [self._keys.run(run_id), self._keys.runs_active, self._keys.runs_active_of(owner)]
        keys += [self._keys.usage(owner), self._keys.content(held) if held else self._keys.runs]
        with redis_errors():
            in_force = await self._finish_script(keys=keys, args=[encoded, run_id, held])
        if not in_force:  # the run was deleted meanwhile: nothing to finish
            return wanted, False
        return (wanted, True) if in_force == encoded else (_record(in_force), False)

    async def active_count(self) -> int:
        """How many runs are unfinished (queued or running) in the cluster."""
        with redis_errors():
            return int(await self._redis.zcard(self._keys.runs_active))

    async def active_ids(self) -> list[str]:
        """The ids of the runs listed as unfinished, oldest first."""
        with redis_errors():
            return [str(run_id) for run_id in await self._redis.zrange(self._keys.runs_active, 0, -1)]

    async def drop_active(self, run_id: str, owner: str) -> None:
        """Unlist a finished run from the unfinished ones (its node died before it could)."""
        with redis_errors():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zrem(self._keys.runs_active, run_id)
                pipe.zrem(self._keys.runs_active_of(owner), run_id)
                await pipe.execute()

    async def listing(
        self, offset: int, limit: int, status: str | None = None, owner: str | None = None
    ) -> list[RunRecord]:
        """Runs newest first, filtered by status and owner, ``limit`` of them after ``offset``
        matches. Reads the index in batches (never SCAN)."""
        matched: list[RunRecord] = []
        skipped = 0
        start = 0
        while len(matched) < limit:
            with redis_errors():
                run_ids = await self._redis.zrevrange(self._keys.runs, start, start + LIST_BATCH - 1)
                if not run_ids:
                    break
                raw = await self._redis.mget([self._keys.run(str(run_id)) for run_id in run_ids])
            start += LIST_BATCH
            for item in raw:
                record = _record(item) if item else None
                if (
                    record is None
                    or (status and record["status"] != status)
                    or (owner and record["owner"] != owner)
                ):
                    continue
                if skipped < offset:
                    skipped += 1
                    continue
                matched.append(record)
                if len(matched) == limit:
                    break
        return matched

    async def active_plans(self) -> tuple[list[str], list[dict[str, Any]]]:
        """The ids of the unfinished runs, oldest first, and their plans (one each, if shared)."""
        with redis_errors():
            run_ids = await self.active_ids()
            records = (
                await self._redis.mget([self._keys.run(run_id) for run_id in run_ids]) if run_ids else []
            )
            plan_ids = sorted({json.loads(raw)["plan_id"] for raw in records if raw})
            plans = (
                await self._redis.mget([self._keys.plan(plan_id) for plan_id in plan_ids]) if plan_ids else []
            )
        return run_ids, [json.loads(raw) for raw in plans if raw]

    async def active_content(self) -> set[str]:
        """Content ids the plans of unfinished runs use: their sources and the recorded outputs
        of their steps (what they may be reusing right now)."""
        _, plans = await self.active_plans()
        cache_ids = {step["cache_id"] for plan in plans for step in plan["steps"]}
        with redis_errors():
            async with self._redis.pipeline(transaction=False) as pipe:
                for cache_id in cache_ids:
                    pipe.hget(self._keys.step(cache_id), "content_id")
                outputs = await pipe.execute()
        return {str(found) for found in outputs if found} | cache_ids  # a SOURCE's cache id is its content id

    async def delete(self, run_id: str, expected_status: str | None = None) -> list[str]:
        """Remove a finished run's record, events and index entry; the content ids it held
        (which the deletion rules may then remove). ``expected_status``: 409 if the run's
        status is no longer that one (it changed while its deletion was being decided)."""
        record = await self.get(run_id)
        if not is_final(record["status"]):
            raise Conflict("the run is still going: cancel it first", run_id=run_id)
        if expected_status is not None and record["status"] != expected_status:
            raise Conflict("the run changed while it was being deleted: try again", run_id=run_id)
        used = [item["content_id"] for item in record["inputs"]] + [record["recipe_content_id"]]
        output = record["output"]
        used += [output["content_id"]] if output else []
        owner = record["owner"]
        keys = [self._keys.run(run_id), self._keys.events(run_id), self._keys.run_reported(run_id)]
        keys += [self._keys.runs, self._keys.runs_active, self._keys.runs_active_of(owner)]
        keys += [self._keys.usage(owner), *map(self._keys.content_runs, used)]
        held = output["content_id"] if output and record["status"] == RunStatus.COMPLETED else ""
        with redis_errors():  # the run no longer holds its content against deletion
            await self._delete_script(keys=keys, args=[held, run_id])
        return used

    async def listed(self) -> list[tuple[str, float]]:
        """Every run id with its submission time (start-up and publishing work: it may be long)."""
        return await scored_members(self._redis, self._keys.runs)

    async def stored(self, listed: list[tuple[str, float]]) -> list[StoredRun]:
        """The records and plans of ``listed`` runs (from :meth:`listed`) that still exist."""
        with redis_errors():
            raw = await self._redis.mget([self._keys.run(run_id) for run_id, _ in listed]) if listed else []
        runs = [(_record(item), submitted) for item, (_, submitted) in zip(raw, listed, strict=True) if item]
        plan_keys = [self._keys.plan(run["plan_id"]) for run, _ in runs]
        with redis_errors():
            plans = await self._redis.mget(plan_keys) if runs else []
        return [
            StoredRun(record=run, plan=json.loads(plan) if plan else None, submitted=submitted)
            for (run, submitted), plan in zip(runs, plans, strict=True)
        ]

    async def restore(self, runs: list[StoredRun]) -> int:
        """Add the runs Redis lacks (a record present is never overwritten), listed when they
        were submitted, unfinished ones as active (they resume); a finished run's stream gets
        its final event, so a client following it sees it end. How many were added."""
        with redis_errors():
            async with self._redis.pipeline(transaction=False) as pipe:
                for run in runs:
                    pipe.set(self._keys.run(run.record["run_id"]), json.dumps(run.record), nx=True)
                    if run.plan is not None:
                        pipe.set(self._keys.plan(run.record["plan_id"]), json.dumps(run.plan), nx=True)
                written = iter(await pipe.execute())
        created = []
        for run in runs:
            if next(written):
                created.append(run)
            if run.plan is not None:
                next(written)
        await self._list_restored(created)
        return len(created)

    async def _list_restored(self, runs: list[StoredRun]) -> None:
        with redis_errors():
            async with self._redis.pipeline(transaction=False) as pipe:
                for run in runs:
                    run_id, status = run.record["run_id"], str(run.record.get("status"))
                    pipe.zadd(self._keys.runs, {run_id: run.submitted}, nx=True)
                    if not is_final(status):
                        pipe.zadd(self._keys.runs_active, {run_id: run.submitted}, nx=True)
                        owner = str(run.record.get("owner"))
                        pipe.zadd(self._keys.runs_active_of(owner), {run_id: run.submitted}, nx=True)
                    else:
                        ending = {key: run.record.get(key) for key in ENDING_FIELDS if key in run.record}
                        pipe.xadd(self._keys.events(run_id), entry(final_event(RunStatus(status)), ending))
                        await self._held_again(pipe, run.record)
                await pipe.execute()

    async def _held_again(self, pipe: Any, record: RunRecord) -> None:
        """Queue a restored completed run's hold on its output (its content is restored first)."""
        output = record.get("output")
        if record.get("status") == RunStatus.COMPLETED and output:
            keys = [self._keys.usage(str(record["owner"])), self._keys.content(output["content_id"])]
            await self._hold_output(keys=keys, args=[output["content_id"]], client=pipe)


def _record(raw: str | bytes) -> RunRecord:
    """A stored record (the run index is its only writer)."""
    return read_record(json.loads(raw))
