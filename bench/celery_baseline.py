"""Celery + Redis on this machine: the figures the node's own benchmarks are set beside.

The node replaces a FastAPI + Celery server; this measures Celery here, in one run, with Redis
as broker and result backend and prefork workers (``celery -A bench.celery_baseline worker
--pool prefork --concurrency N``, started and stopped here):

(a) no-op tasks/s: NOOP tasks that do nothing, submitted to one worker of concurrency 2; the time
    runs from the first submit to the last result (compare ``bench/executor.py`` (b)).
(b) CPU-bound: STEPS independent tasks, each a blur step of ``bench/multinode.py``: its 800x800
    IMAGE, its sigmas (distinct for every task and every render, so nothing could be reused).
    ``--work step`` (the default) runs what a node's step worker runs for a blur step,
    ``node.executor.worker.compute`` on the same kind of job: read the source PNG, the ``blur``
    effect, encode and write the PNG (the node also adds it to IPFS; no task here stores
    anything). ``--work effect`` runs the ``blur`` effect alone on the decoded pixels. First a
    worker of concurrency 1, then a new one of concurrency 2; each renders a warm-up of four
    tasks per process first. Wall time (first submit to last result), speedup of 2 over 1 and
    the efficiency (speedup / 2): set it beside ``bench/multinode.py``'s cpu N=2.

Every figure is the median of ``--repeat`` runs; also shown are the CPU seconds the worker (its
pool included), Redis, this process (the client) and the rest of the machine used in the median
run. Redis is a redis-server of its own on a free loopback port (``EmbeddedServices``, Redis
alone). Celery is no dependency of the node; install the ``bench`` extra first:

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python -m bench.celery_baseline [--noop 2000] [--steps 32] [--repeat 3]
        [--work step|effect]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.metadata
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from bench.multinode import IMAGE  # the very image bench/multinode.py renders
from bench.procs import CpuMeter, redis_alone
from node.executor.worker import PNG, compute
from node.pixels.effects import EFFECTS
from node.pixels.imaging import Array, png_bytes, read_image
from node.services import ManagedProcess

try:
    from celery import Celery
    from celery.result import ResultSet
except ImportError as missing:  # not in the dev extra: make test never needs it
    raise SystemExit(f"{missing}: install the bench extra, .venv/bin/pip install -e '.[bench]'") from None

ROOT = Path(__file__).resolve().parent.parent
REDIS_ENV = "BENCH_CELERY_REDIS_URL"  # the workers' broker and result backend
NOOP = "bench.celery_baseline.noop"
WORK = {"step": "bench.celery_baseline.blur_step", "effect": "bench.celery_baseline.blur_effect"}
WORKER_START_DEADLINE_S = 60.0
RESULT_TIMEOUT_S = 600.0
TaskArgs = tuple[Any, ...]  # one task's positional arguments
WARMUP_PER_PROCESS = 4  # as bench/multinode.py: four steps per node

app = Celery("celery_baseline")
app.conf.update(
    broker_url=os.environ.get(REDIS_ENV, "redis://127.0.0.1:1/0"),  # set in main() for the client
    result_backend=os.environ.get(REDIS_ENV, "redis://127.0.0.1:1/0"),
    broker_connection_retry_on_startup=True,
)


def noop() -> None:
    """Nothing: what (a) measures is Celery's own cost per task."""


def blur_step(source: str, sigma: float, output: str) -> int:
    """A node's blur step, as its step worker computes it; the PNG's size (the file is removed:
    the node moves it into its cache)."""
    config = {"effect": "blur", "effect_version": EFFECTS["blur"].version, "params": {"sigma": sigma}}
    compute({"job": output, "type": "EFFECT", "config": config, "inputs": [source], "media_types": [PNG],
             "output": output})  # fmt: skip
    path = Path(output)
    size = path.stat().st_size
    path.unlink()
    return size


@functools.cache
def _pixels(source: str) -> Array:
    return read_image(Path(source))


def blur_effect(source: str, sigma: float, output: str) -> int:
    """The ``blur`` effect alone, on the source decoded once per process; the result's bytes."""
    effect = EFFECTS["blur"]
    assert effect.apply is not None
    return int(effect.apply(_pixels(source), {"sigma": sigma}).nbytes)


app.task(name=NOOP)(noop)
app.task(name=WORK["step"])(blur_step)
app.task(name=WORK["effect"])(blur_effect)


def sigma(index: int, salt: int) -> float:
    """The sigma of blur step ``index`` of a render, as ``bench.multinode.recipe`` gives it."""
    return round(4 + index / 100 + salt / 1e6, 6)


def run_tasks(name: str, queue: str, arguments: list[TaskArgs]) -> float:
    """Submit one task per argument tuple; seconds from the first submit to the last result."""
    results: list[Any] = []
    try:
        started = time.perf_counter()
        results.extend(app.send_task(name, args=args, queue=queue) for args in arguments)
        ResultSet(results).get(timeout=RESULT_TIMEOUT_S)  # join_native: the Redis backend's pub/sub
        return time.perf_counter() - started
    except BaseException:
        for result in results:  # the backend holds them: unsubscribe now, while Redis runs
            with contextlib.suppress(Exception):
                app.backend.remove_pending_result(result)
        raise


def _answers(hostname: str) -> Callable[[], bool]:
    def probe() -> bool:
        replies = app.control.ping(destination=[hostname], timeout=0.5) or []
        return any(hostname in reply for reply in replies)

    return probe


@dataclass
class Worker:
    """One ``celery worker`` process of a given concurrency, consuming a queue of its own."""

    concurrency: int
    queue: str
    process: ManagedProcess

    @property
    def pid(self) -> int:
        pid = self.process.pid
        assert pid is not None
        return pid


@contextlib.contextmanager
def celery_worker(concurrency: int, redis_url: str, scratch: Path) -> Iterator[Worker]:
    """A prefork worker of ``concurrency`` processes, ready; stopped (its process group) after."""
    queue = f"bench-c{concurrency}"
    hostname = f"{queue}@bench"
    argv = [sys.executable, "-m", "celery", "-A", "bench.celery_baseline", "worker", "--pool", "prefork",
            "--concurrency", str(concurrency), "--queues", queue, "--hostname", hostname,
            "--loglevel", "WARNING", "--without-mingle", "--without-gossip"]  # fmt: skip
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, REDIS_ENV: redis_url, "PYTHONPATH": pythonpath}
    process = ManagedProcess(f"celery worker c{concurrency}", argv, scratch / f"{queue}.log",
                             _answers(hostname), env)  # fmt: skip
    try:
        process.launch()
        process.wait_ready(WORKER_START_DEADLINE_S)  # stops it and raises if it does not answer
        yield Worker(concurrency, queue, process)
    finally:
        process.stop()


@dataclass
class Measured:
    """One measured batch of tasks."""

    wall_s: float
    cpu: dict[str, float]


def measure(worker: Worker, name: str, batches: list[list[TaskArgs]], redis_pid: int) -> list[Measured]:
    """Run each batch of tasks on ``worker``; wall time and CPU seconds per role of each."""
    meter = CpuMeter({"worker": [worker.pid], "redis": [redis_pid], "client": [os.getpid()]})
    results = []
    for arguments in batches:
        meter.start()
        elapsed = run_tasks(name, worker.queue, arguments)
        results.append(Measured(elapsed, meter.stop()))
    return results


def summary(results: list[Measured]) -> tuple[float, str]:
    """The median wall time, and a note of every run's and the median run's CPU seconds."""
    walls = [result.wall_s for result in results]
    middle = sorted(results, key=lambda result: result.wall_s)[len(results) // 2]
    cpu = ", ".join(f"{role} {seconds:.2f}" for role, seconds in middle.cpu.items())
    every = ", ".join(f"{wall:.2f}" for wall in walls)
    return statistics.median(walls), f"median of {len(walls)}: {every}; cpu s {cpu}"


def noop_series(worker: Worker, count: int, repeats: int, redis_pid: int) -> None:
    run_tasks(NOOP, worker.queue, [()] * min(count, 200))  # warm-up
    elapsed, note = summary(measure(worker, NOOP, [[()] * count] * repeats, redis_pid))
    print(f"(a) no-op, concurrency {worker.concurrency}: {count} tasks in {elapsed:.2f} s, "
          f"{count / elapsed:.0f} tasks/s ({note})", flush=True)  # fmt: skip


def blur_series(worker: Worker, args: argparse.Namespace, source: Path, redis_pid: int) -> float:
    """Warm-up, then ``repeat`` renders of ``steps`` blur tasks; the median wall time."""
    count, steps = worker.concurrency, args.steps
    out = source.parent

    def batch(tasks: int, salt: int) -> list[TaskArgs]:
        return [(str(source), sigma(index, salt), str(out / f"c{count}-{salt}-{index}.png"))
                for index in range(tasks)]  # fmt: skip

    run_tasks(WORK[args.work], worker.queue, batch(WARMUP_PER_PROCESS * count, count))
    batches = [batch(steps, 100 * (repeat + 1) + count) for repeat in range(args.repeat)]
    elapsed, note = summary(measure(worker, WORK[args.work], batches, redis_pid))
    print(f"(b) cpu ({args.work}), concurrency {count}: {steps} tasks in {elapsed:.2f} s ({note})",
          flush=True)  # fmt: skip
    return elapsed


def run(args: argparse.Namespace, scratch: Path, redis_url: str, redis_pid: int) -> None:
    source = scratch / "work" / "source.png"
    source.parent.mkdir()
    source.write_bytes(png_bytes(IMAGE))
    client = redis.Redis.from_url(redis_url)
    try:
        server = client.info("server")["redis_version"]
    finally:
        client.close()
    version = importlib.metadata.version
    print(f"Celery {version('celery')} (kombu {version('kombu')}), redis-server {server} as broker and "
          f"result backend, prefork pool; {len(os.sched_getaffinity(0))} cores", flush=True)  # fmt: skip
    with celery_worker(1, redis_url, scratch) as worker:
        single = blur_series(worker, args, source, redis_pid)
    with celery_worker(2, redis_url, scratch) as worker:
        if args.noop:
            noop_series(worker, args.noop, args.repeat, redis_pid)
        double = blur_series(worker, args, source, redis_pid)
    speedup = single / double
    print(f"(b) cpu ({args.work}): concurrency 2 over 1: speedup {speedup:.2f}, "
          f"efficiency {speedup / 2:.2f} (speedup / 2)", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noop", type=int, default=2000, help="no-op tasks per run of (a); 0 skips (a)")
    parser.add_argument("--steps", type=int, default=32, help="blur tasks per render of (b)")
    parser.add_argument("--repeat", type=int, default=3, help="measured runs; the median is shown")
    parser.add_argument("--work", choices=sorted(WORK), default="step", help="what a blur task runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch, redis_alone(Path(scratch)) as services:
        redis_pid = services.processes["redis"].pid
        assert redis_pid is not None
        redis_url = str(services.settings.redis_url)
        app.conf.update(broker_url=redis_url, result_backend=redis_url)
        try:
            run(args, Path(scratch), redis_url, redis_pid)
        finally:
            app.close()


if __name__ == "__main__":
    main()
