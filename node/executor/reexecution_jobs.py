"""Re-execution jobs: a re-execution started by a request, followed by its status.

A re-execution is not a run: it writes nothing to the cluster's shared indexes (no run entry,
no events stream, no claims), so its progress lives here, in the memory of the node doing it,
and is read with ``GET /reexecutions/{id}`` (polling: the steps' verdicts as they come, then the
signed record's CID). A node restart forgets its jobs (the records already written stay, in
IPFS). At most ``max_running`` run at once (the rest are refused with 429 before any work);
the last KEEP_FINISHED finished jobs are kept for their status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from node.errors import NodeError, NotFound, TooManyRequests
from node.executor.provenance import RecordWriter
from node.executor.reexecution import Original, Outcome, StepVerdict, summary, write_reexecution
from node.executor.reexecutor import Reexecutor
from node.timestamps import utc_now

log = logging.getLogger(__name__)
MAX_RUNNING = 2  # re-executions at once on one node: each may keep every worker busy
KEEP_FINISHED = 100
BUSY_RETRY_S = 30


class TooManyReexecutions(TooManyRequests):
    code = "too_many_reexecutions"


@dataclass
class ReexecutionJob:
    """A re-execution's state: ``running``, ``done`` (``record_cid`` set) or ``failed``."""

    job_id: str
    provenance: str
    total: int
    started_at: str = field(default_factory=utc_now)
    state: str = "running"
    verdicts: list[StepVerdict] = field(default_factory=list)
    finished_at: str = ""
    record_cid: str = ""
    error: str = ""

    def status(self) -> dict[str, Any]:
        """The job as ``GET /reexecutions/{id}`` answers it."""
        body: dict[str, Any] = {
            "id": self.job_id,
            "url": f"/reexecutions/{self.job_id}",
            "provenance": self.provenance,
            "state": self.state,
            "started_at": self.started_at,
            "progress": {"done": len(self.verdicts), "total": self.total},
            "summary": summary(self.verdicts),
            "steps": [verdict.record() for verdict in self.verdicts],
        }
        extra = {"finished_at": self.finished_at, "record_cid": self.record_cid, "error": self.error}
        return {**body, **{name: value for name, value in extra.items() if value}}


class Reexecutions:
    """This node's re-execution jobs."""

    def __init__(self, reexecutor: Reexecutor, writer: RecordWriter, max_running: int = MAX_RUNNING) -> None:
        self._reexecutor = reexecutor
        self._writer = writer
        self._max_running = max_running
        self._jobs: OrderedDict[str, ReexecutionJob] = OrderedDict()
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def check_capacity(self) -> None:
        """TooManyReexecutions (429, Retry-After) while ``max_running`` jobs run."""
        if len(self._tasks) >= self._max_running:
            raise TooManyReexecutions(
                f"this node re-executes {len(self._tasks)} records now, its limit: ask again later, "
                "or ask another node",
                headers={"Retry-After": str(BUSY_RETRY_S)},
            )

    def start(self, original: Original) -> ReexecutionJob:
        """Start re-executing ``original`` in the background; its job."""
        self.check_capacity()
        job = ReexecutionJob(secrets.token_hex(8), original.cid, original.computed)
        self._jobs[job.job_id] = job
        task = asyncio.create_task(self._run(job, original), name=f"reexecute-{job.job_id}")
        self._tasks[job.job_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job.job_id, None))
        self._forget_old()
        return job

    def get(self, job_id: str) -> ReexecutionJob:
        job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(
                f"no re-execution {job_id!r} on this node (a restart forgets them; the records stay): "
                "start one with POST /provenance/{cid}/reexecute",
                id=job_id,
            )
        return job

    async def wait(self, job_id: str) -> ReexecutionJob:
        """The job once it has ended (for tools in the node's process; clients poll ``get``)."""
        task = self._tasks.get(job_id)
        if task is not None:
            await asyncio.shield(task)
        return self.get(job_id)

    async def _run(self, job: ReexecutionJob, original: Original) -> None:
        async def heard(verdict: StepVerdict) -> None:
            job.verdicts.append(verdict)

        try:
            verdicts = await self._reexecutor.reexecute(original, heard)
            job.finished_at = utc_now()
            job.verdicts = verdicts  # in plan order
            job.record_cid = await write_reexecution(
                self._writer, Outcome(original, job.started_at, job.finished_at, verdicts)
            )
            job.state = "done"
            log.info("re-execution %s of %s done: record %s", job.job_id, job.provenance, job.record_cid)
        except NodeError as exc:
            job.state, job.error, job.finished_at = "failed", exc.message, utc_now()
            log.warning("re-execution %s of %s failed: %s", job.job_id, job.provenance, exc.message)
        except Exception as exc:  # a bug: reported, not left "running" forever
            job.state, job.error, job.finished_at = (
                "failed",
                f"internal error ({type(exc).__name__}): see the node's log",
                utc_now(),
            )
            log.exception("re-execution %s of %s failed", job.job_id, job.provenance)

    def _forget_old(self) -> None:
        finished = [job_id for job_id, job in self._jobs.items() if job.state != "running"]
        for job_id in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self._jobs[job_id]

    async def close(self) -> None:
        """Stop the running jobs (the node is stopping)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
