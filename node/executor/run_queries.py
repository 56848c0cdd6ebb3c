"""Reading runs back: listings, per-step states from the event stream, events to follow, deletion."""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis

from node.errors import Conflict
from node.executor.run_manager import FINAL_STATUSES, RunNotFound
from node.sync.connection import redis_errors
from node.sync.keys import Keys

LIST_BATCH = 200
STEP_STATES = {
    "step_started": "running",
    "step_cached": "cached",
    "step_finished": "done",
    "step_failed": "failed",
}


class RunQueries:
    """Run records and events as the API shows them."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self._redis = client
        self._keys = keys

    async def listing(
        self, offset: int, limit: int, status: str | None = None, owner: str | None = None
    ) -> list[dict[str, Any]]:
        """Runs newest first, filtered by status and owner, ``limit`` of them after ``offset``
        matches. Reads the index in batches (never SCAN)."""
        matched: list[dict[str, Any]] = []
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
                record = json.loads(item) if item else None
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

    async def events(
        self, run_id: str, after: str = "-", block_ms: int | None = None
    ) -> list[tuple[str, dict[str, Any]]]:
        """Events after stream id ``after`` (exclusive; "-" for all), waiting up to ``block_ms``
        for the first one when there are none yet."""
        key = self._keys.events(run_id)
        with redis_errors():
            if block_ms is None:
                start = "-" if after == "-" else f"({after}"
                entries: Any = await self._redis.xrange(key, start, "+")
            else:
                answer: Any = await self._redis.xread({key: "0-0" if after == "-" else after}, block=block_ms)
                entries = answer[0][1] if answer else []
        return [
            (str(entry_id), {"kind": fields["kind"], **json.loads(fields["data"])})
            for entry_id, fields in entries
        ]

    async def step_states(self, run_id: str) -> tuple[dict[str, dict[str, Any]], int]:
        """Each step's latest state (running, cached, done, failed) and the last percent reported."""
        states: dict[str, dict[str, Any]] = {}
        percent = 0
        for _, event in await self.events(run_id):
            if event["kind"] == "progress":
                percent = int(event["percent"])
            elif event["kind"] in STEP_STATES:
                name = str(event["step"])
                state = {"state": STEP_STATES[event["kind"]], "cache_id": event.get("cache_id")}
                state.update({key: event[key] for key in ("cid", "error", "fused", "node") if key in event})
                if "fused" in states.get(name, {}):
                    state.setdefault("fused", states[name]["fused"])
                states[name] = state
        return states, percent

    async def plan(self, plan_id: str) -> dict[str, Any] | None:
        """A plan's record (its steps with their node ids, types, levels and input cache ids),
        or None if this node no longer has it."""
        with redis_errors():
            raw = await self._redis.get(self._keys.plan(plan_id))
        return dict(json.loads(raw)) if raw else None

    async def active_content(self) -> set[str]:
        """Content ids the plans of unfinished runs use: their sources and the recorded outputs
        of their steps (what they may be reusing right now)."""
        with redis_errors():
            run_ids = [str(run_id) for run_id in await self._redis.zrange(self._keys.runs_active, 0, -1)]
            records = (
                await self._redis.mget([self._keys.run(run_id) for run_id in run_ids]) if run_ids else []
            )
            plan_ids = sorted({json.loads(raw)["plan_id"] for raw in records if raw})
            plans = (
                await self._redis.mget([self._keys.plan(plan_id) for plan_id in plan_ids]) if plan_ids else []
            )
            cache_ids = {step["cache_id"] for raw in plans if raw for step in json.loads(raw)["steps"]}
            async with self._redis.pipeline(transaction=False) as pipe:
                for cache_id in cache_ids:
                    pipe.hget(self._keys.step(cache_id), "content_id")
                outputs = await pipe.execute()
        return {str(found) for found in outputs if found} | cache_ids  # a SOURCE's cache id is its content id

    async def delete(self, run_id: str, expected_status: str | None = None) -> list[str]:
        """Remove a finished run's record, events and index entry; the content ids it held
        (which the deletion rules may then remove). ``expected_status``: 409 if the run's
        status is no longer that one (it changed while its deletion was being decided)."""
        with redis_errors():
            raw = await self._redis.get(self._keys.run(run_id))
        if raw is None:
            raise RunNotFound(f"no run {run_id!r}", run_id=run_id)
        record = json.loads(raw)
        if record["status"] not in FINAL_STATUSES:
            raise Conflict("the run is still going: cancel it first", run_id=run_id)
        if expected_status is not None and record["status"] != expected_status:
            raise Conflict("the run changed while it was being deleted: try again", run_id=run_id)
        used = [item["content_id"] for item in record["inputs"]] + [record["recipe_content_id"]]
        used += [record["output"]["content_id"]] if record.get("output") else []
        with redis_errors():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(
                    self._keys.run(run_id), self._keys.events(run_id), self._keys.run_reported(run_id)
                )
                pipe.zrem(self._keys.runs, run_id)
                pipe.zrem(self._keys.runs_active, run_id)
                for content_id in used:  # the run no longer holds its content against deletion
                    pipe.srem(self._keys.content_runs(content_id), run_id)
                await pipe.execute()
        return used
