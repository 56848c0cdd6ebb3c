"""The local scheduler: runs a plan's ready steps concurrently, reusing every computed step.

For each step whose inputs are done: a hit in the step index is reused (``step_cached``), and
so is a step a trusted peer computed (its output fetched by CID: ``adopt``); otherwise, once a
worker slot is free, the node claims it (``Claims``: in Redis when nodes cooperate), its inputs
are materialized from IPFS into the local cache, a worker computes it in its own process group
while the claim is heartbeated, and the output is added to IPFS, pinned, indexed and committed
to the step index (``step_finished``). ``identity`` is zero-copy: its output is its input. The
first failure cancels the steps still running (killing their workers) and fails the plan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Protocol

from node import logs
from node.errors import NodeError, Unavailable
from node.executor.errors import StepFailed, WorkerKilled
from node.executor.expansion import expansion_bytes, spliced
from node.executor.planner import EXPAND, Plan, Step, tool_versions
from node.executor.pool import WorkerPool
from node.executor.slots import PrioritySlots, Rank
from node.media.analysis import ANALYSIS_TYPE
from node.metrics import Metrics
from node.pixels.effects import EFFECTS
from node.records import SignedRecord
from node.store.content import ContentStore, Stored
from node.store.errors import ContentNotFound
from node.store.local_cache import LocalCache
from node.sync.claims import Claim
from node.sync.index import ContentEntry, StepEntry, StepIndex
from node.sync.run_events import PLAN_EXPANDED, STEP_PROGRESS
from node.timestamps import utc_now

log = logging.getLogger(__name__)

Emit = Callable[..., Awaitable[None]]
Receipt = Callable[[Step, ContentEntry], Awaitable[SignedRecord]]
Published = Callable[[str], None]
Adopt = Callable[[Step], Awaitable[ContentEntry | None]]


_scope: ContextVar[str] = ContextVar("attempt_scope", default="")  # the try (run) being executed
_rank: ContextVar[Rank] = ContextVar("run_rank", default=(0, ""))  # its run's place for a worker
KILLED_RETRY_S = 1.0  # before a step whose worker was killed from outside is tried again; doubles
KILLED_RETRY_MAX_S = 16.0
MAX_EXPANSION_BYTES = 64 * 1024 * 1024  # an analysis or expansion record read into memory
KILLS_MAX = 5  # kills in a row of one step's worker before the step fails (counted)


class Claims(Protocol):
    """Who computes a step (see ``node.sync.claims``): ``RedisClaims`` when nodes cooperate,
    ``LocalClaims`` for a scheduler alone (tests)."""

    heartbeat_s: float
    lease_s: float
    node_id: str

    async def claim(self, cache_id: str, *, recompute: bool = False, scope: str = "") -> Claim:
        """won (compute it, with this token), hit (it is done), held (elsewhere) or failed (out
        of attempts in the try ``scope``); ``recompute``: done, but its output was deleted, so
        claim it anyway."""

    def watch(self, cache_id: str) -> AbstractAsyncContextManager[Callable[[], Awaitable[None]]]:
        """While the block runs, notices about the step are caught; what it yields waits for
        one (or a poll interval): watch first, then claim, then wait, so none is missed."""

    async def heartbeat(self, cache_id: str, token: str) -> bool:
        """Renew the claim; False if it was lost."""

    async def commit(self, entry: StepEntry, token: str, receipt: bytes = b"") -> bool:
        """Record the computed step and its receipt's signed bytes; False if this node was
        fenced (nothing written)."""

    async def release(self, cache_id: str, token: str, error: str, *, scope: str = "") -> None:
        """Give the step up after its own failure (``error``, counted in the try ``scope``), or
        with no error after a cancellation, an outage or a killed worker (not counted)."""


async def recorded_expansion(steps: StepIndex, store: ContentStore, cache_id: str) -> dict[str, Any] | None:
    """The record an EXPAND step made, if it is done and its output still held
    (``node.executor.expansion``)."""
    hit = await steps.get(cache_id)
    entry = await store.index.get(hit.content_id) if hit is not None else None
    if entry is None:
        return None
    record: dict[str, Any] = await store.read_json(entry, MAX_EXPANSION_BYTES)
    return record


@contextlib.asynccontextmanager
async def renewing(claims: Claims, cache_id: str, token: str) -> AsyncIterator[None]:
    """Renew a claim every heartbeat while the block runs: work done under a claim outside the
    scheduler (a run's finishing: its receipts, provenance and attestation, which hashes the
    output and inputs) keeps it however long that takes. A lost claim is logged; the work goes
    on (a run's final status is written once whoever finishes, ``RunIndex.finish``)."""

    async def renew() -> None:
        while True:
            await asyncio.sleep(claims.heartbeat_s)  # the renewal period, not a wait for anything
            try:
                if not await claims.heartbeat(cache_id, token):
                    log.warning("claim on %s lapsed while its work went on", cache_id)
                    return
            except Unavailable:  # a Redis blip: the lease has time to spare; renew again
                continue

    task = asyncio.create_task(renew(), name=f"renew-{cache_id[:12]}")
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


LOCAL_TOKEN = "local"  # noqa: S105 - not a secret: the one claimant of a lone scheduler


class LocalClaims:
    """One node alone: every step is its own; one attempt; commits never overwrite."""

    heartbeat_s = 60.0
    lease_s = float("inf")
    node_id = ""

    def __init__(self, steps: StepIndex) -> None:
        self._steps = steps
        self._failed: dict[str, str] = {}

    async def claim(self, cache_id: str, *, recompute: bool = False, scope: str = "") -> Claim:
        if cache_id in self._failed:
            return Claim("failed", detail=self._failed.pop(cache_id))
        if not recompute and await self._steps.get(cache_id) is not None:
            return Claim("hit")
        return Claim("won", token=LOCAL_TOKEN)

    @contextlib.asynccontextmanager
    async def watch(self, cache_id: str) -> AsyncIterator[Callable[[], Awaitable[None]]]:
        async def never_held() -> None:  # a lone scheduler's steps are never held elsewhere
            return None

        yield never_held

    async def heartbeat(self, cache_id: str, token: str) -> bool:
        return True

    async def commit(self, entry: StepEntry, token: str, receipt: bytes = b"") -> bool:
        await self._steps.put_if_absent(entry, receipt)
        return True

    async def release(self, cache_id: str, token: str, error: str, *, scope: str = "") -> None:
        if error:
            self._failed[cache_id] = error


class LeaseLost(Exception):
    """This node no longer holds the claim of the step it was computing."""


class Scheduler:
    """Executes plans on this node with a pool of workers."""

    def __init__(
        self,
        *,
        store: ContentStore,
        steps: StepIndex,
        cache: LocalCache,
        pool: WorkerPool,
        work_dir: Path,
        step_timeout_s: float,
        claims: Claims | None = None,
        receipt: Receipt | None = None,
        published: Published | None = None,
        adopt: Adopt | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._store = store
        self._metrics = metrics or Metrics()  # steps executed, reused, failed, fenced (GET /metrics)
        self._steps = steps
        self._cache = cache
        self._pool = pool
        self._work_dir = work_dir
        self._step_timeout_s = step_timeout_s
        self.claims: Claims = claims or LocalClaims(steps)
        self._slots = PrioritySlots(pool.size)  # steps computing here at once, by run priority
        self._receipt = receipt  # signs a step's receipt (its CID computed, not yet in IPFS)
        self._published = published  # adds a committed receipt to IPFS soon
        self._adopt = adopt  # fetches a step's output a trusted peer computed, if one did
        self._in_flight: dict[str, asyncio.Task[ContentEntry]] = {}  # cache id -> its computation
        self._kills: dict[str, int] = {}  # cache id -> its worker's kills in a row
        self._retry_in: dict[str, float] = {}  # cache id -> seconds to wait before its next try
        self._logs: dict[str, str] = {}  # cache id -> the tail of its tools' log, until reported
        self._running: dict[str, dict[str, str]] = {}  # cache id -> its run, step and start, while computed
        self._abandoned: dict[str, list[tuple[str, str]]] = {}  # cache id -> (token, scope) unreleased

    async def execute(self, plan: Plan, emit: Emit, *, scope: str = "", rank: Rank = (0, "")) -> ContentEntry:
        """Run every step of ``plan`` not yet computed; the output's content entry. ``scope``
        (the run) is the try a step's own failures count against (see ``node.sync.claims``);
        ``rank`` (-priority, submitted) orders its steps' wait for a worker (``slots``)."""
        reset, reset_rank = _scope.set(scope), _rank.set(rank)  # the steps' tasks inherit them
        try:
            return await self._execute(plan, emit)
        finally:
            _scope.reset(reset)
            _rank.reset(reset_rank)

    async def _execute(self, plan: Plan, emit: Emit) -> ContentEntry:
        done = {step.cache_id: await self._source(step) for step in plan.steps if step.type == "SOURCE"}
        pending = [step for step in plan.steps if step.type != "SOURCE"]
        running: dict[asyncio.Task[ContentEntry], Step] = {}
        try:
            while pending or running:
                await self._grow(pending, done, emit)
                await self._start_ready(plan, pending, running, done, emit)
                if running:
                    finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                    for task in finished:
                        done[running.pop(task).cache_id] = task.result()  # raises the step's failure
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
        return done[plan.output]

    async def _start_ready(
        self,
        plan: Plan,
        pending: list[Step],
        running: dict[asyncio.Task[ContentEntry], Step],
        done: dict[str, ContentEntry],
        emit: Emit,
    ) -> None:
        """Reuse or start the steps whose inputs are done. All start at once: a step waits for
        a free worker slot before it claims, so steps held by other nodes take no slot."""
        ready = [step for step in pending if all(input_id in done for input_id in step.inputs)]
        if not ready and not running:  # cannot happen for a plan in topological order
            raise StepFailed(f"plan {plan.plan_id} has steps whose inputs never come")
        for step in ready:
            pending.remove(step)
            hit = await self._steps.get(step.cache_id)
            entry = await self._store.index.get(hit.content_id) if hit is not None else None
            if hit is None or entry is None:  # never computed, or its output was deleted since
                running[self._start_or_join(step, done, emit)] = step
                continue
            done[step.cache_id] = entry
            await self._cached(step, hit.cid, emit)

    async def _grow(self, pending: list[Step], done: dict[str, ContentEntry], emit: Emit) -> None:
        """Splice in the steps of each expansion done (``node.executor.expansion``): the pieces
        of a SEGMENT cut at an analysis's events, then the SEGMENT's own step, reading their join."""
        for position, step in enumerate(pending):
            if not step.expansion or len(step.inputs) > 1 or step.expansion not in done:
                continue
            record = await self._store.read_json(done[step.expansion], MAX_EXPANSION_BYTES)
            grown, added = spliced(step, record)
            known = {item.cache_id for item in pending} | set(done)
            new = [item for item in added if item.cache_id not in known]
            pending[position] = grown
            pending.extend(new)
            await emit(
                PLAN_EXPANDED,
                step=step.node_id,
                cache_id=step.expansion,
                added=[
                    {"step": item.node_id, "type": item.type, "cache_id": item.cache_id} for item in added
                ],
            )
            log.info("step %s: %d steps added by its expansion", step.node_id, len(added))

    def _start_or_join(
        self, step: Step, done: dict[str, ContentEntry], emit: Emit
    ) -> asyncio.Task[ContentEntry]:
        """Compute ``step``, or wait for the computation another run already started here."""
        shared = self._in_flight.get(step.cache_id)
        if shared is not None:
            return asyncio.create_task(self._join(step, shared, done, emit))
        task = asyncio.create_task(self._run_step(step, done, emit))
        self._in_flight[step.cache_id] = task
        task.add_done_callback(lambda _: self._in_flight.pop(step.cache_id, None))
        return task

    async def _join(
        self, step: Step, shared: asyncio.Task[ContentEntry], done: dict[str, ContentEntry], emit: Emit
    ) -> ContentEntry:
        logs.step_id.set(step.cache_id)  # this task's own context
        try:
            entry = await asyncio.shield(shared)
        except asyncio.CancelledError:
            if not shared.cancelled():
                raise  # this run was cancelled
            return await self._run_step(step, done, emit)  # the run that owned it gave up
        await self._cached(step, entry.cid, emit)
        return entry

    async def _source(self, step: Step) -> ContentEntry:
        entry = await self._store.index.get(step.cache_id)
        if entry is None:
            raise ContentNotFound(
                f"input {step.node_id} ({step.cache_id}) is not on this node", ref=step.cache_id
            )
        return entry

    async def _run_step(self, step: Step, done: dict[str, ContentEntry], emit: Emit) -> ContentEntry:
        """Claim and compute ``step`` until it is done (here or elsewhere) or out of attempts."""
        logs.step_id.set(step.cache_id)  # this task's own context (or _join's, the same step)
        _check_runtime(step)
        adopted = await self._adopt(step) if self._adopt is not None else None
        if adopted is not None:
            await self._cached(step, adopted.cid, emit)
            return adopted
        failure: StepFailed | None = None  # this node's last failure of the step
        recompute = False
        await self._let_go_of_abandoned(step.cache_id)
        while True:
            if delay := self._retry_in.pop(step.cache_id, 0.0):
                await asyncio.sleep(delay)
            async with self.claims.watch(step.cache_id) as noticed:
                async with self._slots.held(_rank.get()):  # claim only what a free worker can start now
                    claim = await self.claims.claim(step.cache_id, recompute=recompute, scope=_scope.get())
                    if claim.outcome == "won":
                        try:
                            entry = await self._attempt(step, claim, [done[i] for i in step.inputs], emit)
                        except StepFailed as exc:
                            failure = exc
                            self._metrics.steps_failed.labels(step.type).inc()
                            continue
                        if entry is not None:
                            return entry
                        continue
                if claim.outcome == "held":
                    await noticed()  # its notice, or a poll interval: then check again
                    continue
            if claim.outcome == "failed":
                said = failure.details.get("log", "") if failure is not None else ""
                await emit(
                    "step_failed",
                    step=step.node_id,
                    cache_id=step.cache_id,
                    error=claim.detail,
                    **_said(said),
                )
                raise (
                    failure
                    if failure is not None and failure.message == claim.detail
                    else StepFailed(claim.detail, step=step.node_id)
                )
            entry = await self._done_elsewhere(step)
            if entry is not None:
                return entry
            recompute = True  # recorded, but its output was deleted since

    async def _let_go_of_abandoned(self, cache_id: str) -> None:
        """Release the claims on ``cache_id`` an outage kept this node from releasing, so that
        neither this node nor another waits out their leases, and they count as let go (not
        as deaths)."""
        abandoned = self._abandoned.get(cache_id, [])
        while abandoned:
            token, scope = abandoned[0]
            await self.claims.release(cache_id, token, "", scope=scope)  # Unavailable: kept for later
            abandoned.pop(0)
        self._abandoned.pop(cache_id, None)

    async def _killed(self, step: Step, token: str, exc: WorkerKilled) -> None:
        """Let go of a step whose worker was killed from outside, uncounted, to be tried again
        after a wait that doubles; killed KILLS_MAX times in a row, it is the step's own doing
        (its memory?) and fails, counted."""
        kills = self._kills[step.cache_id] = self._kills.get(step.cache_id, 0) + 1
        if kills > KILLS_MAX:
            del self._kills[step.cache_id]
            message = f"{exc.message}, {kills} times in a row (out of memory?)"
            await self.claims.release(step.cache_id, token, message, scope=_scope.get())
            raise StepFailed(message, step=step.node_id) from exc
        delay = min(KILLED_RETRY_MAX_S, KILLED_RETRY_S * 2 ** (kills - 1))
        log.warning("step %s: %s; trying it again in %.0f s", step.node_id, exc.message, delay)
        await self.claims.release(step.cache_id, token, "", scope=_scope.get())
        self._retry_in[step.cache_id] = delay  # waited out of the worker slot

    async def _attempt(
        self, step: Step, claim: Claim, inputs: list[ContentEntry], emit: Emit
    ) -> ContentEntry | None:
        """Compute a claimed step: its entry; None if the claim was lost or fenced; StepFailed
        (the claim released with the error, for another attempt) if it failed."""
        node, token, started = self.claims.node_id, claim.token, time.monotonic()
        self._metrics.claim_takeovers.inc(claim.took_over)  # 1 if the last holder's lease lapsed
        await emit(
            "step_started",
            step=step.node_id,
            cache_id=step.cache_id,
            type=step.type,
            node=node,
            **_fused(step),
        )
        try:
            try:
                stored = await self._owned(step, token, inputs, emit)
            finally:  # kept for step_finished only: an attempt that ends otherwise leaves none behind
                said = self._logs.pop(step.cache_id, "")
            entry = stored.entry
            receipt = await self._receipt(step, entry) if self._receipt else None
        except LeaseLost:
            log.warning("step %s: lease lost while computing; discarded", step.node_id)
            self._metrics.steps_fenced.labels(step.type).inc()
            return None
        except WorkerKilled as exc:  # infrastructure, not the step: let go, not counted, try again
            await self._killed(step, token, exc)
            return None
        except StepFailed as exc:
            await self.claims.release(step.cache_id, token, exc.message, scope=_scope.get())
            raise
        except Unavailable:  # an outage: let go, not counted; the run waits and tries again
            try:
                await asyncio.shield(self.claims.release(step.cache_id, token, "", scope=_scope.get()))
            except NodeError:  # Redis is the outage: let go as soon as it is back (see _run_step)
                self._abandoned.setdefault(step.cache_id, []).append((token, _scope.get()))
            raise
        except asyncio.CancelledError:
            await asyncio.shield(self.claims.release(step.cache_id, token, "", scope=_scope.get()))
            raise
        record = StepEntry(
            step.cache_id, entry.cid, entry.content_id, entry.size, entry.media_type,
            receipt.cid if receipt else "", node if receipt else "",
        )  # fmt: skip
        if not await self.claims.commit(record, token, receipt.data if receipt else b""):
            log.warning("step %s: fenced (another node holds it now); output discarded", step.node_id)
            self._metrics.steps_fenced.labels(step.type).inc()
            if not stored.existed:
                await self._discard(step, entry)
            return None
        self._kills.pop(step.cache_id, None)
        self._metrics.steps_executed.labels(step.type).inc()
        self._metrics.step_duration.labels(step.type).observe(time.monotonic() - started)
        if receipt and self._published:  # into IPFS in the background, off the step's path
            self._published(receipt.cid)  # (not written if the step was recorded already: skipped)
        await emit(
            "step_finished",
            step=step.node_id,
            cache_id=step.cache_id,
            cid=entry.cid,
            node=node,
            **_said(said),
        )
        return entry

    async def _discard(self, step: Step, entry: ContentEntry) -> None:
        """Best effort: a fenced step's output, which this step added, goes if the step's
        recorded output is other bytes (steps are deterministic, so normally it is the same; and
        while nothing is recorded yet, the node now computing it is making these very bytes)."""
        try:
            recorded = await self._steps.get(step.cache_id)
            if recorded is not None and recorded.content_id != entry.content_id:
                await self._store.discard(entry)
        except NodeError as exc:
            log.warning("step %s: fenced output %s not discarded (%s)", step.node_id, entry.cid, exc.message)

    @property
    def waiting_priorities(self) -> list[int]:
        """The run priorities of the steps waiting here for a free worker (for tests and
        diagnostics)."""
        return [-rank[0] for rank in self._slots.waiting]

    def running(self) -> list[dict[str, str]]:
        """The steps this node is computing now: run, step, since when (the cluster view)."""
        return list(self._running.values())

    async def _owned(self, step: Step, token: str, inputs: list[ContentEntry], emit: Emit) -> Stored:
        """Compute while heartbeating the claim; LeaseLost (the work killed) if it is lost."""
        self._running[step.cache_id] = {"run": _scope.get(), "step": step.node_id, "since": utc_now()}
        try:
            return await self._heartbeating(step, token, inputs, emit)
        finally:
            self._running.pop(step.cache_id, None)

    async def _heartbeating(self, step: Step, token: str, inputs: list[ContentEntry], emit: Emit) -> Stored:
        work = asyncio.create_task(self._compute(step, inputs, emit))
        renewed = time.monotonic()
        try:
            while True:
                finished, _ = await asyncio.wait({work}, timeout=self.claims.heartbeat_s)
                if finished:
                    return work.result()
                try:
                    if not await self.claims.heartbeat(step.cache_id, token):
                        raise LeaseLost(step.cache_id)
                except Unavailable:  # a Redis blip: the lease has time to spare; try again
                    if time.monotonic() - renewed > self.claims.lease_s - self.claims.heartbeat_s:
                        raise
                    continue
                renewed = time.monotonic()
        finally:
            if not work.done():  # lost, cancelled, or Redis failed: the worker is killed
                work.cancel()
                await asyncio.gather(work, return_exceptions=True)

    async def _done_elsewhere(self, step: Step) -> ContentEntry | None:
        """The recorded output of a step done elsewhere; None if that output was deleted.

        Not reported here: the node that computed it reports ``step_finished`` (it usually did
        so for this very run), and a run's finisher reports whatever is left as cached."""
        hit = await self._steps.get(step.cache_id)
        return await self._store.index.get(hit.content_id) if hit is not None else None

    async def _cached(self, step: Step, cid: str, emit: Emit) -> None:
        """Report a step whose result was there already (a run reports each step once: see
        ``RunManager``, so a result another node computed for this run stays "done")."""
        node = self.claims.node_id
        await self._steps.touch(step.cache_id)
        self._metrics.steps_cached.labels(step.type).inc()
        await emit("step_cached", step=step.node_id, cache_id=step.cache_id, cid=cid, node=node)

    async def _compute(self, step: Step, inputs: list[ContentEntry], emit: Emit) -> Stored:
        same = zero_copy_input(step)
        if same is not None:
            return Stored(inputs[same], existed=True)  # same bytes, same CID, nothing added
        if step.type == EXPAND:
            return await self._expand(step, inputs[-1])
        # not offline: in a cluster, an input may be on another node's daemon
        paths = [str(await self._cache.materialize(entry, offline=False)) for entry in inputs]

        async def progress(fields: dict[str, Any]) -> None:  # a long step's frames done, ETA
            await emit(STEP_PROGRESS, step=step.node_id, cache_id=step.cache_id, **fields)

        async with self._scratch(step) as output:
            job = step_job(step, paths, [entry.media_type for entry in inputs], output)
            answer = await self._pool.run(job, self._step_timeout_s, progress)
            if answer.get("log"):  # reported with the step's outcome
                self._logs[step.cache_id] = str(answer["log"])
            stored = await self._store.put_file(output, media_type=str(answer.get("media_type", "")))
            await self._keep_in_cache(output, stored.entry)
        log.info("step %s (%s) computed: %s", step.node_id, step.cache_id, stored.entry.cid)
        return stored

    async def _expand(self, step: Step, analysis: ContentEntry) -> Stored:
        """An EXPAND step: its expansion record, planned from the analysis (small JSON: read
        and planned in a thread)."""
        record = await self._store.read_json(analysis, MAX_EXPANSION_BYTES)
        planned = await asyncio.to_thread(expansion_bytes, step, record)
        async with self._scratch(step) as output:
            await asyncio.to_thread(output.write_bytes, planned)
            return await self._store.put_file(output, media_type=ANALYSIS_TYPE)

    @contextlib.asynccontextmanager
    async def _scratch(self, step: Step) -> AsyncIterator[Path]:
        """A fresh path in the work directory for ``step``'s output, removed afterwards (unless
        moved away meanwhile, into the local cache)."""
        await asyncio.to_thread(self._work_dir.mkdir, parents=True, exist_ok=True)
        output = self._work_dir / f"{step.cache_id}.{secrets.token_hex(4)}.out"
        try:
            yield output
        finally:
            await asyncio.to_thread(_unlink, output)

    async def _keep_in_cache(self, output: Path, entry: ContentEntry) -> None:
        """The output was hashed on its way into IPFS: move it into the local cache as it is."""
        target = self._cache.path_for(entry.content_id)
        await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(os.replace, output, target)


def zero_copy_input(step: Step) -> int | None:
    """Which input's bytes are ``step``'s output, if it computes nothing: ``identity`` (its
    input), a cut at an analysis's events (its join's output, the last input)."""
    if step.type == "EFFECT" and EFFECTS[step.config["effect"]].zero_copy:
        return 0
    return -1 if step.expansion else None


def step_job(step: Step, inputs: list[str], media_types: list[str], output: Path) -> dict[str, Any]:
    """The job a worker (``node.executor.worker``) computes ``step`` from: its input files, in
    DAG order, and where to write the output."""
    job: dict[str, Any] = {"job": step.cache_id, "type": step.type, "config": dict(step.config)}
    return {**job, "inputs": inputs, "media_types": media_types, "output": str(output)}


def _said(said: str) -> dict[str, str]:
    return {"log": said} if said else {}  # the tail of what the step's tools said (step_log)


def _fused(step: Step) -> dict[str, Any]:
    return {"fused": list(step.fused)} if step.fused else {}  # the recipe nodes a CHAIN covers


def runtime_mismatch(step: Step) -> dict[str, str]:
    """The tool and effect versions ``step`` needs that this node does not have (name -> the
    version it needs); empty if this node reproduces its output. An effect this node lacks
    altogether counts as one it has in another version."""
    here = tool_versions()
    wanted = {tool: version for tool, version in step.runtime.items() if here.get(tool) != version}
    ops: list[Mapping[str, Any]] = (
        step.config["ops"] if "ops" in step.config else [step.record()]
    )  # CHAIN, PART
    for op in ops:
        config = op["config"]
        effect = EFFECTS.get(str(config.get("effect"))) if op["type"] == "EFFECT" else None
        if op["type"] == "EFFECT" and (effect is None or effect.version != config["effect_version"]):
            wanted[config["effect"]] = config["effect_version"]
    return wanted


def _check_runtime(step: Step) -> None:
    """A node computes only steps whose output it reproduces: same tools, same effect version."""
    wanted = runtime_mismatch(step)
    if wanted:
        needs = ", ".join(f"{tool} {version}" for tool, version in sorted(wanted.items()))
        raise StepFailed(
            f"this node cannot reproduce step {step.node_id}: it needs {needs}; submit the run again"
        )


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
