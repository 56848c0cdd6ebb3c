"""Runs: a submission of a recipe with inputs, planned, executed, finished with provenance.

A run record lives in Redis (``run:{id}``, JSON) and its progress in the run's event stream
(``events:{id}``, XADD: ``run_queued``, ``step_started``, ``step_cached``, ``step_finished``,
``step_failed``, ``progress``, then one of ``run_completed``, ``run_failed``,
``run_cancelled``). Unfinished runs are in ``runs:active`` and are resumed when the node starts:
their computed steps are cache hits, so a resumed run redoes only what was lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from node.canonical import canonical_id
from node.errors import NodeError, NotFound
from node.executor.errors import RecipeError
from node.executor.planner import Plan, Step, make_plan
from node.executor.provenance import RecordWriter, RunFacts, write_provenance
from node.executor.recipe import Recipe
from node.executor.scheduler import Scheduler
from node.store.content import ContentStore
from node.sync.activities import Activities
from node.sync.connection import redis_errors
from node.sync.index import ContentEntry, StepEntry, StepIndex
from node.sync.keys import Keys
from node.sync.notices import Notices
from node.timestamps import utc_now

log = logging.getLogger(__name__)

EVENTS_MAX_LEN = 10_000
REPORT_GRACE_S = 2.0  # how long a finisher waits for a committed step's own report
REPORT_POLL_S = 0.02
FINAL_STATUSES = ("completed", "failed", "cancelled")

# Move a run to a final status only if it is not final already (a completion and a cancel can
# race); the run leaves runs:active in the same step. Returns the record now in force.
_FINISH = """
local current = redis.call('GET', KEYS[1])
if not current then return false end
local status = cjson.decode(current)['status']
if status == 'completed' or status == 'failed' or status == 'cancelled' then return current end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[2])
return ARGV[1]
"""


# Report a step's outcome (step_finished or step_cached) in the run's stream once per run,
# whichever node learns it first, then the progress it makes: the share of the plan's steps
# reported. A node that finds a result another node computed for this run adds nothing.
# KEYS: events, reported. ARGV: kind, data, cache id, steps in the plan, stream length.
_REPORT = """
local first = redis.call('SADD', KEYS[2], ARGV[3])
if first == 0 and ARGV[1] == 'step_cached' then return 0 end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[5], '*', 'kind', ARGV[1], 'data', ARGV[2])
if first == 1 then
  local percent = math.floor(100 * redis.call('SCARD', KEYS[2]) / tonumber(ARGV[4]))
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[5], '*', 'kind', 'progress',
             'data', '{"percent": ' .. string.format('%d', percent) .. '}')
end
return 1
"""
REPORTED_ONCE = ("step_finished", "step_cached")

_START = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local record = cjson.decode(current)
if record['status'] ~= 'queued' then return 0 end
record['status'] = 'running'
record['updated'] = ARGV[1]
redis.call('SET', KEYS[1], cjson.encode(record))
return 1
"""


def finish_id(run_id: str) -> str:
    """The claim (and step) id of finishing a run: writing its provenance and final status is
    itself a claimed step, so any node can finish a run whose accepting node died."""
    return canonical_id({"finish": run_id})


class RunNotFound(NotFound):
    code = "run_not_found"


@dataclass(frozen=True)
class Submission:
    """What a client asks to render."""

    recipe: Recipe
    recipe_entry: ContentEntry  # the recipe's bytes in the store
    sources: dict[str, str]  # SOURCE node id -> content id
    owner: str
    output_name: str = ""
    media_types: dict[str, str] = field(default_factory=dict)  # content id -> media type


class RunManager:
    """Submits, executes, cancels and resumes runs on this node."""

    def __init__(
        self,
        *,
        client: aioredis.Redis,
        keys: Keys,
        scheduler: Scheduler,
        writer: RecordWriter,
        store: ContentStore,
        steps: StepIndex,
        notices: Notices | None = None,
        activities: Activities | None = None,
    ) -> None:
        self._redis = client
        self._activities = activities
        self._keys = keys
        self._scheduler = scheduler
        self._writer = writer
        self._store = store
        self._steps = steps
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._closed = False  # after close(), nothing starts here any more
        self._finish_script = client.register_script(_FINISH)
        self._start_script = client.register_script(_START)
        self._report_script = client.register_script(_REPORT)
        self._notices = notices
        if notices is not None:
            notices.on("run", self.adopt)

    async def submit(self, submission: Submission) -> dict[str, Any]:
        """Plan and store a run, then start it; the run record (status ``queued``)."""
        recipe = submission.recipe
        sources = {node.id for node in recipe.nodes if node.type == "SOURCE"}
        for node_id in submission.sources:
            if node_id not in sources:
                raise RecipeError(f"the recipe has no SOURCE {node_id!r}", node=node_id, field="inputs")
        plan = make_plan(
            recipe, submission.recipe_entry.content_id, submission.sources, media_types=submission.media_types
        )
        plan_cid = await self._writer.plan(plan)
        run_id = f"run-{secrets.token_hex(8)}"
        await self._hold(run_id, [*submission.sources.values(), submission.recipe_entry.content_id])
        try:
            names = {
                node.id: node.variable or str(node.config.get("asset", node.id)) for node in recipe.nodes
            }
            record = {
                "run_id": run_id,
                "status": "queued",
                "recipe": {"name": recipe.name, "cid": submission.recipe_entry.cid},
                "recipe_content_id": submission.recipe_entry.content_id,
                "plan_id": plan.plan_id,
                "plan_cid": plan_cid,
                "inputs": [
                    {"name": names[node_id], "content_id": cid} for node_id, cid in submission.sources.items()
                ],
                "owner": submission.owner,
                "output_name": submission.output_name or f"{recipe.name}-output",
                "created": utc_now(),
                "updated": utc_now(),
                "output": None,
                "provenance_cid": None,
                "error": None,
            }
            now = time.time()
            with redis_errors():
                async with self._redis.pipeline(transaction=True) as pipe:
                    pipe.set(self._keys.plan(plan.plan_id), json.dumps(plan.record()))
                    pipe.set(self._keys.run(run_id), json.dumps(record))
                    pipe.zadd(self._keys.runs_active, {run_id: now})
                    pipe.zadd(self._keys.runs, {run_id: now})
                    await pipe.execute()
        except BaseException:
            await self._release(run_id, [*submission.sources.values(), submission.recipe_entry.content_id])
            raise
        await self._event(run_id, "run_queued", plan_id=plan.plan_id)
        self._start(run_id)
        await self._announce(run_id)
        return record

    async def _hold(self, run_id: str, content_ids: list[str]) -> None:
        """Mark the content a run uses as held by it, each under its content lock, so a delete
        either finishes before (and the submit fails: the input is gone) or waits and refuses."""
        held: list[str] = []
        try:
            for content_id in sorted(set(content_ids)):
                async with self._store.content_lock(content_id):
                    if await self._store.index.get(content_id) is None:
                        raise NotFound(
                            f"content {content_id} is no longer on this node", content_id=content_id
                        )
                    await self._store.index.add_run(content_id, run_id)
                    held.append(content_id)
        except BaseException:
            await self._release(run_id, held)
            raise

    async def _release(self, run_id: str, content_ids: list[str]) -> None:
        for content_id in set(content_ids):
            await self._store.index.remove_run(content_id, run_id)

    async def get(self, run_id: str) -> dict[str, Any]:
        with redis_errors():
            raw = await self._redis.get(self._keys.run(run_id))
        if raw is None:
            raise RunNotFound(f"no run {run_id!r}", run_id=run_id)
        return dict(json.loads(raw))

    async def wait(self, run_id: str) -> dict[str, Any]:
        """The run record once the run has finished here (for tests, the CLI and benchmarks)."""
        task = self._tasks.get(run_id)
        if task is not None:
            await asyncio.wait({task})  # never raises the task's own cancellation into the caller
        return await self.get(run_id)

    async def cancel(self, run_id: str) -> dict[str, Any]:
        """Stop a run: its running steps' workers are killed; the record says ``cancelled``."""
        record = await self.get(run_id)
        if record["status"] in FINAL_STATUSES:
            return record
        await self._stop_local(run_id)
        final = await self._finish(run_id, "cancelled", "run_cancelled")
        await self._announce(run_id)  # the other nodes stop their part of it
        return final

    async def adopt(self, run_id: str) -> None:
        """A notice about a run: work on it if it is unfinished, stop working on it if not."""
        try:
            record = await self.get(run_id)
        except RunNotFound:
            return
        if record["status"] in FINAL_STATUSES:
            await self._stop_local(run_id)
        elif run_id not in self._tasks:
            self._start(run_id)

    async def _stop_local(self, run_id: str) -> None:
        task = self._tasks.get(run_id)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _announce(self, run_id: str) -> None:
        if self._notices is not None:
            try:
                await self._notices.publish(f"run:{run_id}")
            except NodeError as exc:  # the others find it by polling
                log.warning("run %s: notice not sent (%s)", run_id, exc.message)

    async def resume(self) -> list[str]:
        """Start every unfinished run again (after a restart, or a close); their ids."""
        self._closed = False
        with redis_errors():
            run_ids = [str(run_id) for run_id in await self._redis.zrange(self._keys.runs_active, 0, -1)]
        resumed = []
        for run_id in run_ids:
            if run_id in self._tasks:
                continue
            if (await self.get(run_id))["status"] in FINAL_STATUSES:  # finished, then the node died
                with redis_errors():
                    await self._redis.zrem(self._keys.runs_active, run_id)
                continue
            self._start(run_id)
            resumed.append(run_id)
        if resumed:
            log.info("resuming %d unfinished runs: %s", len(resumed), ", ".join(resumed))
        return resumed

    async def close(self) -> None:
        """Stop executing (the node is shutting down); runs stay active and resume on start.
        A notice that comes after this starts nothing here (another node takes the run)."""
        self._closed = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    def _start(self, run_id: str) -> None:
        if self._closed:
            return
        task = asyncio.create_task(self._execute(run_id), name=f"run-{run_id}")
        self._tasks[run_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(run_id, None))

    async def _execute(self, run_id: str) -> None:
        """Run to a final status, whatever happens (except cancellation, which is shutdown or
        :meth:`cancel`); a run never stays running because of an error."""
        try:
            await self._render(run_id)
        except NodeError as exc:
            log.warning("run %s failed: %s", run_id, exc.message)
            await self._finish_quietly(run_id, error=exc.message)
        except Exception as exc:  # a bug: the run fails visibly rather than hanging
            log.exception("run %s failed unexpectedly", run_id)
            await self._finish_quietly(run_id, error=f"internal error: {type(exc).__name__}")

    async def _render(self, run_id: str) -> None:
        record = await self.get(run_id)
        with redis_errors():
            plan_json = await self._redis.get(self._keys.plan(record["plan_id"]))
        if plan_json is None:
            raise NotFound(f"plan {record['plan_id']} of run {run_id} is missing")
        plan = Plan.from_record(json.loads(plan_json))
        with redis_errors():
            await self._start_script(keys=[self._keys.run(run_id)], args=[utc_now()])

        work = max(1, sum(1 for step in plan.steps if step.type != "SOURCE"))

        async def emit(kind: str, **fields: Any) -> None:
            if kind in REPORTED_ONCE:
                await self._report(run_id, work, kind, fields)
            else:
                await self._event(run_id, kind, **fields)

        output = await self._scheduler.execute(plan, emit)
        await self._finish_claimed(record, plan, output)

    async def _finish_claimed(self, record: dict[str, Any], plan: Plan, output: ContentEntry) -> None:
        """Write the provenance and the final status, if this node wins the finishing claim;
        otherwise wait until whoever won has (or take over if it dies)."""
        run_id, claims = record["run_id"], self._scheduler.claims
        while True:
            async with claims.watch(finish_id(run_id)) as noticed:
                claim = await claims.claim(finish_id(run_id))
                if claim.outcome != "held":
                    break
                await noticed()  # the finisher's commit, or a poll: it may have died
        if claim.outcome == "hit":
            return  # another node finished it
        if claim.outcome == "failed":
            raise NotFound(f"finishing run {run_id} failed: {claim.detail}")
        try:
            await self._report_rest(run_id, plan)
            provenance_cid = await self._provenance(record, plan, output)
            output_json = {
                "cid": output.cid,
                "content_id": output.content_id,
                "media_type": output.media_type,
            }
            await self._store.index.add_run(output.content_id, run_id)  # the output is held for the run too
            await self._finish(
                run_id, "completed", "run_completed", output=output_json, provenance_cid=provenance_cid
            )
        except BaseException as exc:
            error = exc.message if isinstance(exc, NodeError) else ""
            await asyncio.shield(claims.release(finish_id(run_id), claim.token, error))
            raise
        record_entry = await self._store.resolve(provenance_cid)
        await claims.commit(
            StepEntry(finish_id(run_id), record_entry.cid, record_entry.content_id, record_entry.size,
                      record_entry.media_type),
            claim.token,
        )  # fmt: skip

    async def _finish_quietly(self, run_id: str, error: str) -> None:
        """Mark a run failed; if even that fails (Redis down), it stays active and resumes."""
        try:
            await self._finish(run_id, "failed", "run_failed", error=error)
        except NodeError as exc:
            log.error(
                "run %s: could not record its failure (%s); it will be retried on start", run_id, exc.message
            )

    async def _provenance(self, record: dict[str, Any], plan: Plan, output: ContentEntry) -> str:
        index = self._store.index
        inputs = []
        for item in record["inputs"]:
            entry = await index.get(item["content_id"])
            if entry is None:
                raise NotFound(f"input {item['name']} ({item['content_id']}) is no longer on this node")
            inputs.append((str(item["name"]), entry))
        receipts = []
        for step in plan.steps:
            if step.type != "SOURCE":
                hit = await self._steps.get(step.cache_id)
                if hit is None or not hit.receipt_cid:
                    raise NotFound(f"step {step.node_id} ({step.cache_id}) has no signed receipt")
                receipts.append(hit.receipt_cid)
        await self._writer.publish(receipts)
        recipe_entry = await index.get(record["recipe_content_id"])
        if recipe_entry is None:
            raise NotFound(f"recipe {record['recipe']['cid']} is no longer on this node")
        facts = RunFacts(
            run_id=record["run_id"],
            rendered_by=record["owner"],
            output_name=record["output_name"],
            output=output,
            inputs=inputs,
            recipe_name=record["recipe"]["name"],
            recipe=recipe_entry,
            plan_cid=record["plan_cid"],
            plan=plan,
            receipts=receipts,
        )
        return await write_provenance(self._writer, facts)

    async def _finish(self, run_id: str, status: str, event: str, **fields: Any) -> dict[str, Any]:
        """Give the run its final status, unless it already has one (then that one stands)."""
        wanted = {**await self.get(run_id), **fields, "status": status, "updated": utc_now()}
        encoded = json.dumps(wanted)
        with redis_errors():
            in_force = await self._finish_script(
                keys=[self._keys.run(run_id), self._keys.runs_active], args=[encoded, run_id]
            )
        if in_force != encoded:
            return dict(json.loads(in_force)) if in_force else wanted
        await self._event(run_id, event, status=status, **fields)
        log.info("run %s %s", run_id, status)
        if status == "completed" and self._activities is not None:
            cids = [wanted["output"]["cid"], wanted["provenance_cid"]]
            await self._activities.record("run_completed", wanted["owner"], cids, run_id=run_id)
        return wanted

    async def _report_rest(self, run_id: str, plan: Plan) -> None:
        """Report as cached the steps no node has reported for this run: found done by claim
        (a result another run made meanwhile), or their computing node died before reporting.

        A step started in this run may be committed but not reported yet: its node reports it
        just after the commit, which is what let this node finish. Those are given
        ``REPORT_GRACE_S`` to be reported as computed, so none shows as cached first."""
        work = [step for step in plan.steps if step.type != "SOURCE"]
        if not work:
            return
        unreported = await self._unreported(run_id, work)
        if unreported:
            started = await self._started(run_id)
            deadline = time.monotonic() + REPORT_GRACE_S
            while unreported & started and time.monotonic() < deadline:
                await asyncio.sleep(REPORT_POLL_S)
                unreported = await self._unreported(run_id, work)
        for step in work:
            hit = await self._steps.get(step.cache_id) if step.cache_id in unreported else None
            if hit is not None:
                node = self._scheduler.claims.node_id
                fields = {"step": step.node_id, "cache_id": step.cache_id, "cid": hit.cid, "node": node}
                await self._report(run_id, len(work), "step_cached", fields)

    async def _unreported(self, run_id: str, work: list[Step]) -> set[str]:
        """The cache ids of ``work`` whose outcome this run's stream does not report yet."""
        with redis_errors():
            known = await self._redis.smismember(self._keys.run_reported(run_id), [s.cache_id for s in work])
        return {step.cache_id for step, reported in zip(work, known, strict=True) if not reported}

    async def _started(self, run_id: str) -> set[str]:
        """The cache ids of the steps some node started computing in this run."""
        with redis_errors():
            entries: Any = await self._redis.xrange(self._keys.events(run_id))
        return {
            str(json.loads(fields["data"]).get("cache_id", ""))
            for _id, fields in entries
            if fields.get("kind") == "step_started"
        }

    async def _report(self, run_id: str, work: int, kind: str, fields: dict[str, Any]) -> None:
        keys = [self._keys.events(run_id), self._keys.run_reported(run_id)]
        with redis_errors():
            await self._report_script(
                keys=keys, args=[kind, json.dumps(fields), fields["cache_id"], work, EVENTS_MAX_LEN]
            )

    async def _event(self, run_id: str, kind: str, **fields: Any) -> None:
        with redis_errors():
            await self._redis.xadd(
                self._keys.events(run_id),
                {"kind": kind, "data": json.dumps(fields)},
                maxlen=EVENTS_MAX_LEN,
                approximate=True,
            )
