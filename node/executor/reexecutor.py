"""Re-execution: every step of a provenance record computed again here, compared by CID.

Each step runs from its ORIGINAL recorded inputs (the outputs the receipts and the provenance
name), fetched by CID, so each verdict is about that step alone: a step after a ``different``
one is still judged on what it was given. Only where a recorded input is not retrievable
(evicted by a disk budget, say) does a step run on the re-executed output of the step before
it (``inputs: "re-executed"``); if that step was not re-executed either, the step is ``not
reproducible here``. So are steps whose runtime (tool versions, effect versions: the
scheduler's ``runtime_mismatch``) or CPU class (the architecture the record's hardware
descriptor names) is not this node's: determinism is promised per runtime and CPU class only.

It shares nothing with the cluster's bookkeeping: no step index (no cache hits, no joining
another run's computation), no claims, no receipts, no run entries. Steps run on the node's
worker pool (same memory limits and timeout as a run's steps), in a scratch folder that is
removed afterwards; an output's CID is what ``ipfs add --only-hash`` gives it, so no output
bytes enter the IPFS repository at all, and content the node already held (an output identical
to the original, an input) keeps its pin and index entry untouched.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import platform
import secrets
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

from node.errors import NodeError, Unavailable
from node.executor.errors import StepFailed
from node.executor.expansion import expansion_bytes
from node.executor.planner import EXPAND, Step
from node.executor.pool import WorkerPool
from node.executor.reexecution import DIFFERENT, NOT_HERE, REPRODUCED, Original, StepVerdict
from node.executor.scheduler import runtime_mismatch, step_job, zero_copy_input
from node.media.ffmpeg import cpu_class
from node.store.ipfs import IpfsClient, file_chunks
from node.store.local_cache import LocalCache
from node.sync.index import ContentEntry, ContentIndex

log = logging.getLogger(__name__)
Progress = Callable[[StepVerdict], Awaitable[None]]
FETCHES_AT_ONCE = 8  # inputs fetched from IPFS concurrently
MAX_ANALYSIS_BYTES = 64 * 1024 * 1024  # an analysis read for an EXPAND step (as the scheduler)


@dataclass(frozen=True)
class Local:
    """Bytes as a local file, and what they are."""

    path: Path
    entry: ContentEntry


class Reexecutor:
    """Re-executes provenance records on this node's workers."""

    def __init__(
        self,
        *,
        ipfs: IpfsClient,
        index: ContentIndex,
        cache: LocalCache,
        pool: WorkerPool,
        work_dir: Path,
        step_timeout_s: float,
    ) -> None:
        self.ipfs = ipfs
        self.index = index
        self.cache = cache  # the node's: read, never written
        self.pool = pool
        self.work_dir = work_dir
        self.step_timeout_s = step_timeout_s

    async def reexecute(self, original: Original, progress: Progress) -> list[StepVerdict]:
        """Every computed step's verdict, in plan order; ``progress`` hears each as it comes."""
        scratch = self.work_dir / f"reexecute-{secrets.token_hex(6)}"
        try:
            return await _Reexecution(self, original, scratch, progress).run()
        finally:
            await asyncio.to_thread(shutil.rmtree, scratch, ignore_errors=True)


class _Reexecution:
    """One re-execution: its steps as tasks, each waiting for a step before it only when it
    needs that step's re-executed output."""

    def __init__(self, node: Reexecutor, original: Original, scratch: Path, progress: Progress) -> None:
        self._node = node
        self._original = original
        self._scratch = scratch
        self._progress = progress
        self._inputs = LocalCache(scratch / "inputs", node.ipfs)  # inputs the node's cache lacks
        self._outputs: dict[str, asyncio.Future[Local | None]] = {}
        self._order: dict[str, int] = {}  # a step waits only for steps before it: a plan can lie
        self._fetching = asyncio.Semaphore(FETCHES_AT_ONCE)
        self._computing = asyncio.Semaphore(node.pool.size)
        self._cpu = _other_cpu_class(original)

    async def run(self) -> list[StepVerdict]:
        steps = [step for step in self._original.plan.steps if step.type != "SOURCE"]
        loop = asyncio.get_running_loop()
        self._outputs = {step.cache_id: loop.create_future() for step in steps}
        self._order = {step.cache_id: position for position, step in enumerate(steps)}
        tasks = [asyncio.create_task(self._judged(step)) for step in steps]
        try:
            return list(await asyncio.gather(*tasks))
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _judged(self, step: Step) -> StepVerdict:
        output = self._outputs[step.cache_id]
        produced: Local | None = None
        try:
            verdict, produced = await self._verdict(step)
        finally:  # None (it failed, or was not computed): what waits for it re-executes nothing
            if not output.done():
                output.set_result(produced)
        await self._progress(verdict)
        log.info("re-execution of %s: step %s %s", self._original.cid, step.node_id, verdict.verdict)
        return verdict

    async def _verdict(self, step: Step) -> tuple[StepVerdict, Local | None]:
        recorded = self._original.recorded(step.cache_id)
        base = StepVerdict(step.node_id, step.cache_id, step.type, NOT_HERE, recorded)
        reason = self._not_here(step, recorded)
        if reason:
            return replace(base, reason=reason), None
        inputs, origin, missing = await self._gather_inputs(step)
        if missing:
            return replace(base, inputs=origin, reason=missing), None
        try:
            async with self._computing:
                produced = await self._compute(step, inputs)
        except StepFailed as exc:  # no bytes to compare: not evidence of other bytes
            return replace(base, inputs=origin, reason=f"it failed here: {exc.message}"), None
        made = produced.entry
        same = recorded is not None and made.cid == recorded.cid
        reason = "" if same else f"recorded {recorded.cid if recorded else '?'}, made {made.cid} here"
        verdict = REPRODUCED if same else DIFFERENT
        return replace(base, verdict=verdict, reexecuted=made, inputs=origin, reason=reason), produced

    def _not_here(self, step: Step, recorded: ContentEntry | None) -> str:
        if recorded is None:
            return "the provenance names no valid receipt for this step: nothing to compare with"
        if self._cpu:
            return self._cpu
        wanted = sorted(runtime_mismatch(step).items())
        return (
            "another runtime: it needs " + ", ".join(f"{name} {version}" for name, version in wanted)
            if wanted
            else ""
        )

    async def _gather_inputs(self, step: Step) -> tuple[list[Local], str, str]:
        """The step's input files (recorded ones where retrievable), whether any is re-executed,
        and why one is missing (empty if none is)."""
        inputs: list[Local] = []
        origin = "recorded"
        for cache_id in step.inputs:
            local = await self._recorded_input(cache_id)
            if local is None:
                origin = "re-executed"
                waited = self._outputs.get(cache_id)
                earlier = self._order.get(cache_id, len(self._order)) < self._order[step.cache_id]
                local = await waited if waited is not None and earlier else None
            if local is None:
                return [], origin, f"its input {cache_id} is not retrievable here, nor re-executed"
            inputs.append(local)
        return inputs, origin, ""

    async def _recorded_input(self, cache_id: str) -> Local | None:
        entry = self._original.recorded(cache_id)
        if entry is None:
            return None
        cached = self._node.cache.path_for(entry.content_id)
        linked = await asyncio.to_thread(_linked, cached, self._scratch / "linked")
        if linked is not None:
            return Local(linked, entry)
        # Content the cluster indexes may come from its daemons; anything else only from this
        # node's own (a request never makes the daemon search the network).
        indexed = await self._node.index.get(entry.content_id) is not None
        try:
            async with self._fetching:
                return Local(await self._inputs.materialize(entry, offline=not indexed), entry)
        except Unavailable:
            raise  # an outage: the re-execution fails, to be asked again
        except NodeError as exc:
            log.info("re-execution of %s: input %s not retrievable (%s)", self._original.cid, entry.cid, exc)
            return None

    async def _compute(self, step: Step, inputs: list[Local]) -> Local:
        same = zero_copy_input(step)
        if same is not None:
            return inputs[same]
        output = self._scratch / "outputs" / f"{step.cache_id}.out"
        await asyncio.to_thread(output.parent.mkdir, parents=True, exist_ok=True)
        media_type = ""
        if step.type == EXPAND:
            await asyncio.to_thread(_write_expansion, step, inputs[-1].path, output)
        else:
            paths, media_types = (
                [str(item.path) for item in inputs],
                [item.entry.media_type for item in inputs],
            )
            job = step_job(step, paths, media_types, output)
            answer = await self._node.pool.run(job, self._node.step_timeout_s)
            media_type = str(answer.get("media_type", ""))
        return Local(output, await self._identified(output, media_type))

    async def _identified(self, path: Path, media_type: str) -> ContentEntry:
        """The file's content id, size and CID (``only_hash``: nothing stored in IPFS)."""
        content_id, size = await asyncio.to_thread(_sha3, path)
        handle = path.open("rb")  # opened here, not in a thread: see LocalCache._fetch
        try:
            added = await self._node.ipfs.add(file_chunks(handle), only_hash=True)
        finally:
            handle.close()
        return ContentEntry(content_id, added.cid, size, media_type)


def _other_cpu_class(original: Original) -> str:
    """Why no step is reproducible here if the record's hardware descriptor names another CPU
    class (``cpu_class``: the machine and its widest SIMD; older descriptors: the machine)."""
    hardware = original.hardware
    if "cpu_class" in hardware:
        recorded, here = str(hardware["cpu_class"]), cpu_class()
    else:
        recorded, here = str(hardware.get("machine", "")), platform.machine()
    if recorded and recorded != here:
        return f"another CPU class: rendered on {recorded}, this node is {here}"
    return ""


def _write_expansion(step: Step, analysis: Path, output: Path) -> None:
    if analysis.stat().st_size > MAX_ANALYSIS_BYTES:
        raise StepFailed(f"the analysis is larger than {MAX_ANALYSIS_BYTES} bytes", step=step.node_id)
    try:
        record = json.loads(analysis.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        raise StepFailed(f"the analysis is not JSON: {exc}", step=step.node_id) from exc
    output.write_bytes(expansion_bytes(step, record))


def _sha3(path: Path) -> tuple[str, int]:
    hasher, size = hashlib.sha3_256(), 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            hasher.update(chunk)
            size += len(chunk)
    return hasher.hexdigest(), size


def _linked(path: Path, folder: Path) -> Path | None:
    """A hard link to the node's cache file in ``folder`` (the garbage collector may remove the
    cache file meanwhile: the link keeps the bytes); the file itself if they are on different
    file systems; None if the cache does not hold it."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    try:
        os.link(path, target)
    except FileExistsError:
        pass
    except FileNotFoundError:
        return None
    except OSError:  # another file system: read it in place
        return path if path.is_file() else None
    return target
