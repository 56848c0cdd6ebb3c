"""Runs: a submission of a recipe with inputs, planned, executed, finished with provenance.

A run's record is in the run index (``node.sync.run_index``) and its progress in its event
stream (``node.sync.run_events``). Unfinished runs are resumed when the node starts: their
computed steps are cache hits, so a resumed run redoes only what was lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Unpack

from node import logs
from node.canonical import canonical_id
from node.errors import Conflict, NodeError, NotFound, Unavailable
from node.executor.admission import NO_LIMITS, OwnerLimits, TooManyRuns, check_owner
from node.executor.attestation import Attester
from node.executor.callbacks import Notifier
from node.executor.errors import RecipeError
from node.executor.expansion import completed
from node.executor.planner import EXPAND, Plan, make_plan, tool_versions
from node.executor.provenance import RecordWriter, RunFacts, write_provenance
from node.executor.recipe import MAX_RECIPE_BYTES, Recipe, parse_recipe
from node.executor.run_detail import run_times, step_details
from node.executor.scheduler import Scheduler, recorded_expansion, renewing
from node.executor.segments import clip_facts, segmented
from node.store.content import ContentStore
from node.store.local_cache import LocalCache
from node.sync.activities import Activities
from node.sync.index import ContentEntry, StepEntry, StepIndex
from node.sync.keys import ASSET_NAME
from node.sync.notices import Notices
from node.sync.run_events import PLAN_EXPANDED, REPORTED_ONCE, STEP_PROGRESS, final_event
from node.sync.run_index import OwnerBusy, RunIndex, RunNotFound
from node.sync.run_status import RunEnding, RunOutput, RunRecord, RunStatus, is_final
from node.timestamps import utc_now

log = logging.getLogger(__name__)

RETRY_FIRST_S = 1.0  # the first wait after an outage interrupted a run; it doubles each time
QUEUE_FULL_RETRY_S = 10
WAIT_POLL_S = 0.2
REPORT_GRACE_S = 2.0  # how long a finisher waits for a committed step's own report
REPORT_POLL_S = 0.02


def finish_id(run_id: str) -> str:
    """The claim (and step) id of finishing a run: writing its provenance and final status is
    itself a claimed step, so any node can finish a run whose accepting node died."""
    return canonical_id({"finish": run_id})


class QueueFull(Unavailable):
    code = "queue_full"


@dataclass(frozen=True)
class Submission:
    """What a client asks to render."""

    recipe: Recipe
    recipe_entry: ContentEntry  # the recipe's bytes in the store
    sources: dict[str, str]  # SOURCE node id -> content id
    owner: str
    output_name: str = ""
    media_types: dict[str, str] = field(default_factory=dict)  # content id -> media type
    retry_of: str = ""  # the failed or cancelled run this one tries again
    priority: int = 0  # -10 to 10: every node gives a free worker to higher-priority runs' steps first
    callback: str = ""  # a URL told when the run ends (``node.executor.callbacks``)
    limits: OwnerLimits = NO_LIMITS  # the submitting user's (``node.executor.admission``)


class RunManager:
    """Submits, executes, cancels and resumes runs on this node."""

    def __init__(
        self,
        *,
        runs: RunIndex,
        scheduler: Scheduler,
        writer: RecordWriter,
        store: ContentStore,
        steps: StepIndex,
        notices: Notices | None = None,
        activities: Activities | None = None,
        max_queued: int = 10_000,
        retry_max_s: float = 30.0,
        notifier: Notifier | None = None,
        cache: LocalCache | None = None,
        segment_s: float = 0.0,
    ) -> None:
        self._runs = runs
        self._notifier = notifier
        self._max_queued = max_queued  # unfinished runs in the cluster before submit says 503
        self._retry_max_s = retry_max_s
        self._cache = cache  # where inputs are probed, for segmented plans
        self._segment_s = segment_s  # a per-frame chain over a longer clip is rendered in parts
        self._retries: dict[str, tuple[int, float]] = {}  # run id -> (outages so far, try again at)
        self._events = runs.events
        self._activities = activities
        self._scheduler = scheduler
        self._writer = writer
        self._attester = Attester(writer.identity, store)
        self._store = store
        self._steps = steps
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._closed = False  # after close(), nothing starts here any more
        self._notices = notices
        if notices is not None:
            notices.on("run", self.adopt)

    async def check_capacity(self, adding: int = 1, owner: str = "", limits: OwnerLimits = NO_LIMITS) -> None:
        """QueueFull (503 with Retry-After) if ``adding`` more runs would take the cluster past
        ``max_queued`` unfinished ones; TooManyRuns (429) or QuotaExceeded (413) past ``owner``'s
        ``limits``: asked before a submission writes anything (a recipe's bytes included)."""
        if await self._runs.active_count() + adding > self._max_queued:
            raise QueueFull(
                f"the node's queue is full ({self._max_queued} unfinished runs); try again later",
                headers={"Retry-After": str(QUEUE_FULL_RETRY_S)},
            )
        if owner:
            await check_owner(self._store.index.usage, owner, limits, adding)

    async def submit(self, submission: Submission) -> RunRecord:
        """Plan and store a run, then start it; the run record (status ``queued``). QueueFull
        (503) when the cluster already holds ``max_queued``, TooManyRuns (429) when its owner
        has as many unfinished runs as they may: nothing written but a plan's record (IPFS)."""
        await self.check_capacity(owner=submission.owner, limits=submission.limits)
        recipe = submission.recipe
        sources = {node.id for node in recipe.nodes if node.type == "SOURCE"}
        for node_id in submission.sources:
            if node_id not in sources:
                raise RecipeError(f"the recipe has no SOURCE {node_id!r}", node=node_id, field="inputs")
        plan = make_plan(
            recipe, submission.recipe_entry.content_id, submission.sources, media_types=submission.media_types
        )
        if self._segment_s > 0 and self._cache is not None:
            facts = await clip_facts(submission.media_types, self._store, self._cache)
            plan = segmented(plan, facts, self._segment_s, tool_versions())
        plan_cid = await self._writer.plan(plan)
        run_id = f"run-{secrets.token_hex(8)}"
        await self._hold(run_id, [*submission.sources.values(), submission.recipe_entry.content_id])
        try:
            names = {
                node.id: node.variable or str(node.config.get("asset", node.id)) for node in recipe.nodes
            }
            record: RunRecord = {
                "run_id": run_id,
                "status": RunStatus.QUEUED,
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
            if submission.retry_of:
                record["retry_of"] = submission.retry_of
            record["priority"] = submission.priority
            if submission.callback:
                record["callback"] = submission.callback
            await self._runs.add(record, plan.record(), run_limit=submission.limits.max_runs)
        except OwnerBusy as busy:  # another node took the owner's last slot meanwhile
            await self._release(run_id, [*submission.sources.values(), submission.recipe_entry.content_id])
            raise TooManyRuns.at(busy.unfinished, submission.limits.max_runs) from None
        except BaseException:
            await self._release(run_id, [*submission.sources.values(), submission.recipe_entry.content_id])
            raise
        await self._events.append(run_id, "run_queued", plan_id=plan.plan_id)
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

    async def get(self, run_id: str) -> RunRecord:
        """The run's record; RunNotFound if there is none."""
        return await self._runs.get(run_id)

    async def listing(
        self, offset: int, limit: int, status: str | None = None, owner: str | None = None
    ) -> list[dict[str, Any]]:
        """Runs newest first, each with its times and progress (read for running runs only)."""
        records = await self._runs.listing(offset, limit, status, owner)
        running = [record["run_id"] for record in records if record["status"] == RunStatus.RUNNING]
        percents = await self._events.percents(running) if running else {}
        now = time.time()
        return [
            {
                **record,
                **run_times(record, now),
                "progress": _progress(record, percents.get(record["run_id"], 0)),
            }
            for record in records
        ]

    async def detail(self, run_id: str, node_id: str) -> dict[str, Any]:
        """The run as ``GET /runs/{id}`` shows it: its record, its times, its progress, and
        each work step of its plan with what it does and what happened to it
        (``node.executor.run_detail``); ``node_id`` is the node asked."""
        shown, _ = await self.detail_and_plan(run_id, node_id)
        return shown

    async def detail_and_plan(
        self, run_id: str, node_id: str
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """:meth:`detail`, and the plan it was read from with the steps its expansions added
        so far (None if this node no longer has it), for a page that also draws the plan."""
        record = await self.get(run_id)
        events = await self._events.read(run_id)
        plan_record = await self._runs.plan(record["plan_id"])
        plan = Plan.from_record(plan_record) if plan_record else Plan(record["plan_id"], "", (), "")
        plan = await completed(plan, self._expansion)  # with the steps its expansions added so far
        percent = max(
            (int(event["percent"]) for _, event in events if event["kind"] == "progress"), default=0
        )
        steps = step_details(plan, events, record.get("started"), node_id)
        await self._fill_silent(steps, record["status"])
        shown = {
            **record,
            **run_times(record, time.time()),
            "progress": _progress(record, percent),
            "steps": steps,
        }
        return shown, (plan.record() if plan_record else None)

    async def _fill_silent(self, steps: dict[str, dict[str, Any]], status: RunStatus) -> None:
        """States for steps the run's events do not tell (a run restored from a published
        state, or whose early events were trimmed): the step index knows those computed, and
        by whom; in a finished run the rest never ran (``skipped``) or nothing says who ran them."""
        for step in steps.values():
            if step["state"] != "pending" or "cache_id" not in step:
                continue
            entry = await self._steps.get(step["cache_id"])
            if entry is not None:
                step.update(state="done", cid=entry.cid, node=entry.node)
            elif status == RunStatus.COMPLETED:
                step["state"] = "unknown"
            elif is_final(status):
                step["state"] = "skipped"

    async def wait(self, run_id: str) -> RunRecord:
        """The run record once the run has finished here (for tests, the CLI and benchmarks);
        a run an outage interrupted is waited for through its tries."""
        while True:
            task = self._tasks.get(run_id)
            if task is not None:
                await asyncio.wait({task})  # never raises the task's own cancellation into the caller
            record = await self.get(run_id)
            if is_final(record["status"]) or (run_id not in self._retries and run_id not in self._tasks):
                return record
            await asyncio.sleep(WAIT_POLL_S)

    async def cancel(self, run_id: str) -> RunRecord:
        """Stop a run: the record says ``cancelled`` first, so the cancellation wins whatever
        the run's own task does meanwhile (a completion comes second and changes nothing); then
        its running steps' workers are killed here, and the other nodes are told."""
        record = await self.get(run_id)
        if is_final(record["status"]):
            return record
        final = await self._finish(run_id, RunStatus.CANCELLED)
        await self._stop_local(run_id)
        await self._announce(run_id)  # the other nodes stop their part of it
        return final

    async def retry(self, run_id: str, limits: OwnerLimits = NO_LIMITS) -> RunRecord:
        """Try a failed or cancelled run again, as a new run (a run's final status stands) of
        the same recipe bytes, inputs, owner and output name, with ``retry_of`` naming it.
        The steps already done are reused from the step index; a step's attempts are counted per
        run, so the failed ones start afresh and nothing else's counters change. Conflict (409)
        for a run that is not failed or cancelled."""
        record = await self.get(run_id)
        if record["status"] not in (RunStatus.FAILED, RunStatus.CANCELLED):
            raise Conflict(
                f"run {run_id} is {record['status']}: only a failed or cancelled run can be retried",
                run_id=run_id,
            )
        plan_record = await self._runs.plan(record["plan_id"])
        recipe_entry = await self._store.index.get(record["recipe_content_id"])
        if plan_record is None or recipe_entry is None:
            raise NotFound(
                f"run {run_id}'s plan or recipe is no longer on this node: submit it again", run_id=run_id
            )
        recipe = await asyncio.to_thread(
            parse_recipe, await self._store.read_all(recipe_entry, MAX_RECIPE_BYTES)
        )
        sources = {
            step["node_id"]: step["cache_id"] for step in plan_record["steps"] if step["type"] == "SOURCE"
        }
        entries = await self._store.index.get_many(list(sources.values()))
        submission = Submission(
            recipe,
            recipe_entry,
            sources,
            owner=record["owner"],
            output_name=record["output_name"],
            media_types={entry.content_id: entry.media_type for entry in entries},
            retry_of=run_id,
            priority=record.get("priority", 0),
            callback=record.get("callback", ""),
            limits=limits,
        )
        return await self.submit(submission)

    async def adopt(self, run_id: str) -> None:
        """A notice about a run: work on it if it is unfinished, stop working on it if not."""
        try:
            record = await self.get(run_id)
        except RunNotFound:
            return
        if is_final(record["status"]):
            await self._stop_local(run_id)
        elif run_id not in self._tasks and self._retries.get(run_id, (0, 0.0))[1] <= time.monotonic():
            self._start(run_id)

    async def _stop_local(self, run_id: str) -> None:
        self._retries.pop(run_id, None)  # finished: no outage to wait out any more
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
        run_ids = await self._runs.active_ids()
        for gone in self._retries.keys() - set(run_ids):  # finished or deleted elsewhere
            del self._retries[gone]
        resumed = []
        now = time.monotonic()
        for run_id in run_ids:
            if run_id in self._tasks or self._retries.get(run_id, (0, now))[1] > now:
                continue  # running here, or waiting out an outage
            record = await self.get(run_id)
            if is_final(record["status"]):  # finished, then the node died
                await self._runs.drop_active(run_id, record["owner"])
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
        if self._closed or run_id in self._tasks:  # a notice and the poll may both start it
            return
        task = asyncio.create_task(self._execute(run_id), name=f"run-{run_id}")
        self._tasks[run_id] = task
        task.add_done_callback(
            lambda done: self._tasks.pop(run_id) if self._tasks.get(run_id) is done else None
        )

    @property
    def active(self) -> int:
        """How many runs this node is working on now."""
        return len(self._tasks)

    async def _execute(self, run_id: str) -> None:
        """Run to a final status, whatever happens (except cancellation, which is shutdown or
        :meth:`cancel`); a run never stays running because of an error."""
        logs.run_id.set(run_id)  # this task's own context: its lines, and its steps' tasks, say it
        try:
            await self._render(run_id)
            self._retries.pop(run_id, None)
        except Unavailable as exc:  # an outage delays a run, never fails it: it is tried again
            outages, _ = self._retries.get(run_id, (0, 0.0))
            delay = min(self._retry_max_s, RETRY_FIRST_S * 2**outages)
            self._retries[run_id] = (outages + 1, time.monotonic() + delay)
            log.warning("run %s interrupted (%s); trying it again in %.0f s", run_id, exc.message, delay)
        except NodeError as exc:
            log.warning("run %s failed: %s", run_id, exc.message)
            await self._finish_quietly(run_id, error=exc.message)
        except Exception as exc:  # a bug: the run fails visibly rather than hanging
            log.exception("run %s failed unexpectedly", run_id)
            await self._finish_quietly(run_id, error=f"internal error: {type(exc).__name__}")

    async def _render(self, run_id: str) -> None:
        record = await self.get(run_id)
        plan_record = await self._runs.plan(record["plan_id"])
        if plan_record is None:
            raise NotFound(f"plan {record['plan_id']} of run {run_id} is missing")
        plan = Plan.from_record(plan_record)
        await self._runs.start(run_id, utc_now())

        plan = await completed(plan, self._expansion)  # a run resumed: what was added before
        work = max(1, sum(1 for step in plan.steps if step.type != "SOURCE"))
        counted = {step.cache_id for step in plan.steps}

        async def emit(kind: str, **fields: Any) -> None:
            nonlocal work
            if kind == PLAN_EXPANDED:  # counted once, whichever node reports it first
                work += sum(1 for added in fields["added"] if added["cache_id"] not in counted)
                counted.update(added["cache_id"] for added in fields["added"])
                first = fields["added"][0]["step"] if fields["added"] else ""
                fields = {**fields, "added": len(fields["added"]), "first": first}
            if kind in REPORTED_ONCE:
                await self._events.report(run_id, work, kind, fields)
            elif kind == STEP_PROGRESS:
                await self._events.step_progress(run_id, work, fields)
            else:
                await self._events.append(run_id, kind, **fields)

        rank = (-record.get("priority", 0), record["created"])  # higher priority, then first come
        output = await self._scheduler.execute(plan, emit, scope=run_id, rank=rank)
        await self._finish_claimed(record, await completed(plan, self._expansion), output)

    async def _expansion(self, cache_id: str) -> dict[str, Any] | None:
        """The record an EXPAND step made, if it is done (``node.executor.expansion``)."""
        return await recorded_expansion(self._steps, self._store, cache_id)

    async def _finish_claimed(self, record: RunRecord, plan: Plan, output: ContentEntry) -> None:
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
            async with renewing(claims, finish_id(run_id), claim.token):
                provenance_cid, attestation_cid, finished = await self._records(record, plan, output)
                output_json: RunOutput = {
                    "cid": output.cid,
                    "content_id": output.content_id,
                    "media_type": output.media_type,
                }
                # the output is held for the run too
                await self._store.index.add_run(output.content_id, run_id)
                if ASSET_NAME.fullmatch(record["output_name"]):  # its label names it as an input too
                    await self._store.index.name_output(record["output_name"], output.content_id)
                await self._finish(
                    run_id,
                    RunStatus.COMPLETED,
                    at=finished,
                    output=output_json,
                    provenance_cid=provenance_cid,
                    attestation_cid=attestation_cid,
                )
        except BaseException as exc:
            error = exc.message if isinstance(exc, NodeError) and not isinstance(exc, Unavailable) else ""
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
            await self._finish(run_id, RunStatus.FAILED, error=error)
        except NodeError as exc:
            log.error(
                "run %s: could not record its failure (%s); it will be retried on start", run_id, exc.message
            )

    async def _records(self, record: RunRecord, plan: Plan, output: ContentEntry) -> tuple[str, str, str]:
        """Report the steps left, write the provenance and the attestation; their CIDs and the
        finishing time."""
        await self._report_rest(record["run_id"], plan)
        facts = await self._run_facts(record, plan, output)
        provenance_cid = await write_provenance(self._writer, facts)
        finished = utc_now()  # the run record's and the attestation's, so they agree
        return provenance_cid, await self._attest(facts, provenance_cid, finished), finished

    async def _attest(self, facts: RunFacts, provenance_cid: str, finished: str) -> str:
        """The in-toto/SLSA attestation of the run (``node.executor.attestation``)."""
        current = await self.get(facts.run_id)  # the record given to the finisher predates its start
        started = current.get("started") or current["created"]
        return await self._attester.attest(facts, provenance_cid, started=started, finished=finished)

    async def _run_facts(self, record: RunRecord, plan: Plan, output: ContentEntry) -> RunFacts:
        """What the run's provenance and attestation state; its receipts are in IPFS after."""
        index = self._store.index
        inputs = []
        for item in record["inputs"]:
            entry = await index.get(item["content_id"])
            if entry is None:
                raise NotFound(f"input {item['name']} ({item['content_id']}) is no longer on this node")
            inputs.append((str(item["name"]), entry))
        receipts, expansions = [], []
        for step in plan.steps:
            if step.type != "SOURCE":
                hit = await self._steps.get(step.cache_id)
                if hit is None or not hit.receipt_cid:
                    raise NotFound(f"step {step.node_id} ({step.cache_id}) has no signed receipt")
                receipts.append(hit.receipt_cid)
                if step.type == EXPAND:
                    expansions.append(hit.cid)
        await self._writer.publish(receipts)
        recipe_entry = await index.get(record["recipe_content_id"])
        if recipe_entry is None:
            raise NotFound(f"recipe {record['recipe']['cid']} is no longer on this node")
        return RunFacts(
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
            expansions=expansions,
        )

    async def _finish(
        self, run_id: str, status: RunStatus, at: str = "", **ending: Unpack[RunEnding]
    ) -> RunRecord:
        """Give the run its final status (at ``at``, or now), unless it already has one (then
        that one stands)."""
        wanted = await self.get(run_id)
        wanted["status"], wanted["updated"] = status, at or utc_now()
        wanted["finished"] = wanted["updated"]
        if "output" in ending:
            wanted["output"] = ending["output"]
        if "provenance_cid" in ending:
            wanted["provenance_cid"] = ending["provenance_cid"]
        if ending.get("attestation_cid"):
            wanted["attestation_cid"] = str(ending["attestation_cid"])
        if "error" in ending:
            wanted["error"] = ending["error"]
        in_force, written = await self._runs.finish(wanted)
        if not written:
            return in_force
        await self._events.append(run_id, final_event(status), status=status, **ending)
        if wanted.get("callback") and self._notifier is not None:  # told once: by the node that wrote it
            await self._notifier.queue(run_id, wanted["callback"], dict(wanted))
        log.info("run %s %s", run_id, status)
        output, provenance_cid = wanted["output"], wanted["provenance_cid"]
        if status == RunStatus.COMPLETED and self._activities is not None and output and provenance_cid:
            cids = [output["cid"], provenance_cid]
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
        cache_ids = [step.cache_id for step in work]
        unreported = await self._events.unreported(run_id, cache_ids)
        if unreported:
            started = await self._events.started(run_id)
            deadline = time.monotonic() + REPORT_GRACE_S
            while unreported & started and time.monotonic() < deadline:
                await asyncio.sleep(REPORT_POLL_S)
                unreported = await self._events.unreported(run_id, cache_ids)
        for step in work:
            hit = await self._steps.get(step.cache_id) if step.cache_id in unreported else None
            if hit is not None:
                node = self._scheduler.claims.node_id
                fields = {"step": step.node_id, "cache_id": step.cache_id, "cid": hit.cid, "node": node}
                await self._events.report(run_id, len(work), "step_cached", fields)


def _progress(record: RunRecord, reported: int) -> int:
    """A run's progress: 100 once completed (whatever its stream last said), else the share
    of its steps reported."""
    return 100 if record["status"] == RunStatus.COMPLETED else reported
