"""Step workers: long-lived ``node.executor.worker`` processes, each in its own process group.

A step that is cancelled or runs past its deadline has its worker's whole process group killed
(and the worker replaced on the next step), so nothing it started lives on. Workers also die
with the node (PR_SET_PDEATHSIG), like the embedded daemons, and run under the memory limit
(``node.memory``), which what they start inherits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from node.executor.errors import StepFailed, StepOutOfMemory, StepTimeout, WorkerKilled
from node.services import die_with_parent

log = logging.getLogger(__name__)
OnProgress = Callable[[dict[str, Any]], Awaitable[None]]


# Signals someone sends (an operator, a supervisor, the OOM killer's SIGKILL aside from our own
# limits): the worker did not fail on its own. Crashes (SIGSEGV, SIGBUS, SIGABRT) are not here.
KILLED_FROM_OUTSIDE = frozenset({signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP})


class Worker:
    """One worker process and the pipe to it."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    async def spawn(cls, memory_limit: int | None = None) -> Worker:
        """A new worker, under ``memory_limit`` bytes of data (None: unlimited)."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "node.executor.worker",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,
            preexec_fn=die_with_parent(os.getpid(), memory_limit),
        )
        log.info("step worker started pid=%d", process.pid)
        return cls(process)

    async def run(
        self, job: dict[str, Any], timeout_s: float, on_progress: OnProgress | None = None
    ) -> dict[str, Any]:
        """Send one job and wait for its answer; its progress lines go to ``on_progress``."""
        assert self.process.stdin is not None and self.process.stdout is not None  # noqa: S101 - PIPEs
        try:
            self.process.stdin.write(json.dumps(job).encode() + b"\n")
            await self.process.stdin.drain()
        except (ConnectionError, RuntimeError) as exc:  # it died while idle (closed pipe)
            code = await self.process.wait()
            raise WorkerKilled(
                f"step worker was gone before its job (exit code {code})", exit_code=code
            ) from exc
        deadline = time.monotonic() + timeout_s
        while True:
            line = await self._line(deadline, timeout_s)
            message = dict(json.loads(line)) if line else {}
            if "progress" not in message or "ok" in message:
                break
            if on_progress is not None:
                await on_progress(message["progress"])
        if not line:
            code = await self.process.wait()
            if -code in KILLED_FROM_OUTSIDE:
                name = signal.Signals(-code).name
                raise WorkerKilled(f"step worker was killed by {name}", exit_code=code)
            raise StepFailed(f"step worker died (exit code {code})", exit_code=code)
        return message

    async def _line(self, deadline: float, timeout_s: float) -> bytes:
        """The worker's next line (empty if it died); StepTimeout past the step's deadline."""
        assert self.process.stdout is not None  # noqa: S101 - a PIPE
        try:
            return await asyncio.wait_for(
                self.process.stdout.readline(), max(0.0, deadline - time.monotonic())
            )
        except TimeoutError:
            raise StepTimeout(
                f"step ran past its deadline of {timeout_s:.0f} s", timeout_s=timeout_s
            ) from None

    async def kill(self) -> None:
        """SIGKILL the worker's process group and reap the worker."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        await self.process.wait()
        log.info("step worker killed pid=%d", self.process.pid)


class WorkerPool:
    """At most ``size`` jobs at once, on reused workers; a failed or cancelled worker is killed.
    Each worker may map at most ``memory_limit`` bytes of data (None: no limit)."""

    def __init__(self, size: int, memory_limit: int | None = None) -> None:
        self.size = size
        self.memory_limit = memory_limit
        self._slots = asyncio.Semaphore(size)
        self._idle: list[Worker] = []
        self._busy: set[Worker] = set()
        self._spawning = 0

    @property
    def busy_pids(self) -> list[int]:
        """Pids of the workers running a job now (for tests and diagnostics)."""
        return [worker.pid for worker in self._busy]

    @property
    def idle_pids(self) -> list[int]:
        """Pids of the workers waiting for a job (for tests and diagnostics)."""
        return [worker.pid for worker in self._idle]

    async def prestart(self) -> None:
        """Start every worker now, so the first steps do not wait for Python to start and
        import numpy (a served node calls this once it listens; tests start workers lazily)."""
        missing = self.size - len(self._idle) - len(self._busy) - self._spawning
        self._idle.extend(await asyncio.gather(*(self._spawn() for _ in range(missing))))

    async def _spawn(self) -> Worker:
        self._spawning += 1  # counted, so that prestart never starts more than ``size``
        try:
            return await Worker.spawn(self.memory_limit)
        finally:
            self._spawning -= 1

    async def run(
        self, job: dict[str, Any], timeout_s: float, on_progress: OnProgress | None = None
    ) -> dict[str, Any]:
        """Run ``job`` on a free worker; StepFailed if it reports failure, dies or times out.
        ``on_progress`` hears a long step's progress as the worker reports it."""
        async with self._slots:
            worker = await self._take_idle() or await self._spawn()
            self._busy.add(worker)
            try:
                answer = await worker.run(job, timeout_s, on_progress)
            except BaseException:  # cancelled, timed out or died: the process group goes
                self._busy.discard(worker)
                await asyncio.shield(worker.kill())
                raise
            self._busy.discard(worker)
            self._idle.append(worker)
        if not answer.get("ok"):
            error, log = str(answer.get("error", "step failed")), str(answer.get("log", ""))
            if answer.get("code") == StepOutOfMemory.code:
                raise StepOutOfMemory(f"{StepOutOfMemory.code}: {error}", log=log)
            raise StepFailed(error, log=log)
        return answer

    async def _take_idle(self) -> Worker | None:
        """An idle worker that is still alive (one killed while idle is reaped and dropped)."""
        while self._idle:
            worker = self._idle.pop()
            if worker.process.returncode is None:
                return worker
            await worker.process.wait()
            log.warning(
                "step worker pid=%d died while idle (exit code %s)", worker.pid, worker.process.returncode
            )
        return None

    async def close(self) -> None:
        """Kill every worker (the node is stopping)."""
        workers = [*self._idle, *self._busy]
        self._idle.clear()
        self._busy.clear()
        await asyncio.gather(*(worker.kill() for worker in workers), return_exceptions=True)
