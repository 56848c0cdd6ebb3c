"""Several node processes on one Redis rendering one recipe: speedup and duplicate executions.

N ``python -m node`` processes with one worker each share one Redis. With ``--daemons shared``
(the default) they also share one Kubo daemon; with ``--daemons per-node`` each node has a Kubo
of its own (started here through ``EmbeddedServices`` with the shared Redis given, so only Kubo
starts; the node gets it as ``ARTDAG_IPFS_API``): the nodes' daemons peer through the shared
Redis's registry (``node/federation/peering.py``), and each node fetches the source image and what
others made by CID from the daemon that holds it. ``both`` runs the two, one after the other.

A recipe of STEPS independent steps is submitted to the first node; the wall time runs from
submission to the run's final event. Two kinds of step, each run with distinct parameters so
none is a cache hit:

(a) CPU-bound: a Gaussian blur of an 800x800 image, for N = 1 up to the core count;
(b) sleep-bound: the ``wait`` effect holding a small image for 200 ms (standing for work done on
    other machines), for N = 1 to 8, which shows the cost of coordination apart from cores.

For each N the nodes start once, render a warm-up (four steps per node, so that the source is
in their local caches), then ``--repeat`` measured renders; the figures are their median.
Baseline: N = 1 of the same kind and mode, in the same run. Prints the wall time, the speedup
over N = 1 (targets: sleep-bound >= 0.85 N; CPU-bound: speedup/N, the efficiency, at N = 2),
duplicate executions (steps started more than once) and cache hits (steps reported cached that
no node started in the run; both must be 0; a step computed in the run but reported cached
before its step_finished is counted apart), and, for where the time goes: the steps each node
ran, when the last node started its first step, how long finishing the run took after the last
step, and the CPU seconds the nodes' processes, their workers, Kubo, Redis and the rest of the
machine used during the measured renders.

    .venv/bin/python -m bench.multinode [--daemons shared|per-node|both] [--repeat 3]
        [--max-nodes N] [--sleep-nodes 8] [--steps 32] [--kinds cpu,sleep|cpu|sleep]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import redis

from bench.procs import CpuMeter, parents, redis_alone
from node.config import Settings
from node.pixels.imaging import png_bytes
from node.services import EmbeddedServices
from node.testing import NodeProcess

IMAGE = np.random.default_rng(4).integers(0, 256, (800, 800, 3), dtype=np.uint8)
SMALL = np.random.default_rng(5).integers(0, 256, (16, 16, 3), dtype=np.uint8)
SLEEP_TARGET = 0.85  # sleep-bound speedup >= 0.85 N


def recipe(steps: int, salt: int, kind: str) -> str:
    """``steps`` independent effects on one image: blurs (cpu) or 200 ms waits (sleep)."""
    nodes = ["    - {id: src, type: SOURCE, config: {input: true}}"]
    for index in range(steps):
        vary = index / 100 + salt / 1e6  # distinct work every step and every render (salt < 10**4)
        if kind == "cpu":
            config = f"{{effect: blur, sigma: {round(4 + vary, 6)}}}"
        else:
            config = f"{{effect: wait, seconds: {round(0.2 + vary / 100, 8)}}}"
        nodes.append(f"    - {{id: s{index}, type: EFFECT, config: {config}, inputs: [src]}}")
    return "name: fan\ndag:\n  nodes:\n" + "\n".join(nodes) + f"\n  output: s{steps - 1}\n"


@dataclass
class Cluster:
    """The shared Redis and the Kubo daemons the nodes use (one, or one per node)."""

    redis_url: str
    apis: list[str]  # node i uses apis[i % len(apis)]
    kubo_pids: list[int]
    redis_pid: int
    client: redis.Redis = field(init=False)

    def __post_init__(self) -> None:
        self.client = redis.Redis.from_url(self.redis_url, decode_responses=True)

    def env(self, index: int, prefix: str) -> dict[str, str]:
        return {
            "ARTDAG_REDIS_URL": self.redis_url,
            "ARTDAG_IPFS_API": self.apis[index % len(self.apis)],
            "ARTDAG_REDIS_PREFIX": prefix,
            "ARTDAG_WORKERS": "1",
            "ARTDAG_LOG_LEVEL": "WARNING",
        }


@dataclass
class Stream:
    """What a run's event stream says about its steps."""

    duplicates: int  # steps started more than once: must be 0
    hits: int  # steps reported cached and started by no node in this run: must be 0
    late: int  # steps computed in this run, reported cached before their step_finished
    steps_by_node: list[int]  # steps each node started, most first
    last_first_step_s: float  # from the run's first event to the last node's first step_started
    tail_s: float  # from the last step_finished to the run's final event (finishing the run)


@dataclass
class Measured:
    """One measured render."""

    wall_s: float
    stream: Stream
    cpu: dict[str, float]


def render(nodes: list[NodeProcess], image_cid: str, steps: int, *, salt: int, kind: str, prefix: str,
           cluster: Cluster) -> tuple[float, str]:  # fmt: skip
    """Submit to the first node; seconds from submission to the run's final event (its time in
    the event stream, so the 50 ms status polling adds nothing) and the run id."""
    first = nodes[0]
    started = time.time()
    run_id = first.start_run(recipe(steps, salt, kind), [image_cid])
    while True:
        status = first.call("GET", f"/runs/{run_id}")["status"]
        if status in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.05)
    if status != "completed":
        raise RuntimeError(f"run {run_id} {status}; node logs: {[str(node.log_path) for node in nodes]}")
    final: Any = cluster.client.xrevrange(f"{prefix}events:{run_id}", count=1)
    return int(final[0][0].split("-")[0]) / 1000 - started, run_id  # a stream id starts with ms


def executions(client: redis.Redis, prefix: str, run_id: str, count: int) -> Stream:
    """Read the run's event stream (each entry's id starts with its time in ms)."""
    entries: Any = client.xrange(f"{prefix}events:{run_id}")
    events = [
        (int(entry_id.split("-")[0]) / 1000, fields["kind"], json.loads(fields["data"]))
        for entry_id, fields in entries
    ]
    started = Counter(data.get("cache_id") for _, kind, data in events if kind == "step_started")
    cached = [data.get("cache_id") for _, kind, data in events if kind == "step_cached"]
    first_step: dict[str, float] = {}
    for at, kind, data in events:
        if kind == "step_started":
            first_step.setdefault(str(data.get("node")), at)
    finished = [at for at, kind, _ in events if kind == "step_finished"]
    by_node = Counter(str(data.get("node")) for _, kind, data in events if kind == "step_started")
    return Stream(
        duplicates=sum(times - 1 for times in started.values()),
        hits=sum(1 for cache_id in cached if cache_id not in started),
        late=sum(1 for cache_id in cached if cache_id in started),
        steps_by_node=sorted(by_node.values(), reverse=True) + [0] * (count - len(by_node)),
        last_first_step_s=max(first_step.values()) - events[0][0] if first_step else 0.0,
        tail_s=events[-1][0] - max(finished) if finished else 0.0,
    )


def meter_for(nodes: list[NodeProcess], cluster: Cluster) -> CpuMeter:
    """CPU per role: the node processes, their step workers, Kubo, Redis."""
    node_pids = {node.pid for node in nodes}
    workers = [pid for pid, parent in parents().items() if parent in node_pids]
    return CpuMeter(
        {
            "nodes": list(node_pids),
            "workers": workers,
            "kubo": cluster.kubo_pids,
            "redis": [cluster.redis_pid],
        }
    )


@dataclass(frozen=True)
class Shape:
    """What a series renders: the kind of step, steps per render, measured renders per N, and
    the daemons mode (a tag in names and output)."""

    kind: str
    steps: int
    repeats: int
    tag: str


def measure_count(cluster: Cluster, scratch: Path, shape: Shape, count: int) -> list[Measured]:
    """Start ``count`` nodes, warm them up, render ``repeats`` times; each render's figures."""
    kind, steps, tag = shape.kind, shape.steps, shape.tag
    prefix = f"bench-{tag}-{kind}{count}:"
    nodes = [
        NodeProcess(scratch / f"{tag}-{kind}{count}-{index}", cluster.env(index, prefix))
        for index in range(count)
    ]
    results = []
    try:
        for node in nodes:
            node.wait_healthy()
        image_cid = nodes[0].upload(png_bytes(IMAGE if kind == "cpu" else SMALL))["cid"]
        # Warm-up: four steps per node, so each node has run a step on this source (it is
        # in its local cache) before the measured render, which then times coordination.
        render(nodes, image_cid, 4 * count, salt=count, kind=kind, prefix=prefix, cluster=cluster)
        meter = meter_for(nodes, cluster)
        for repeat in range(shape.repeats):
            meter.start()
            salt = 100 * (repeat + 1) + count
            elapsed, run_id = render(
                nodes, image_cid, steps, salt=salt, kind=kind, prefix=prefix, cluster=cluster
            )
            cpu = meter.stop()
            results.append(Measured(elapsed, executions(cluster.client, prefix, run_id, count), cpu))
    finally:
        for node in nodes:
            node.popen.terminate()
        for node in nodes:
            node.popen.wait()
    return results


def series(cluster: Cluster, scratch: Path, shape: Shape, counts: range) -> None:
    """Wall time and speedup of one kind of step for each number of nodes."""
    kind = shape.kind
    baseline = 0.0
    for count in counts:
        results = measure_count(cluster, scratch, shape, count)
        walls = [result.wall_s for result in results]
        elapsed = statistics.median(walls)
        baseline = baseline or elapsed
        speedup = baseline / elapsed
        if kind == "sleep":
            target = SLEEP_TARGET * count
            verdict = f"target >= {target:.2f}: {'met' if speedup >= target else 'MISSED'}"
        else:
            verdict = f"efficiency {speedup / count:.2f}"
        duplicates = sum(result.stream.duplicates for result in results)
        hits = sum(result.stream.hits for result in results)
        late = sum(result.stream.late for result in results)
        middle = sorted(results, key=lambda result: result.wall_s)[len(results) // 2]
        cpu = ", ".join(f"{role} {seconds:.2f}" for role, seconds in middle.cpu.items())
        all_walls = ", ".join(f"{wall:.2f}" for wall in walls)
        print(f"({kind}, {shape.tag}) N={count}: {shape.steps} steps in {elapsed:.2f} s "
              f"(median of {len(walls)}: {all_walls}), "
              f"speedup {speedup:.2f} ({verdict}), duplicates {duplicates}, cache hits {hits}"
              f"{late_note(late)}; median render: steps per node {middle.stream.steps_by_node}, "
              f"last node's first step at {1000 * middle.stream.last_first_step_s:.0f} ms, "
              f"finish after the last step {1000 * middle.stream.tail_s:.0f} ms; cpu s {cpu}",
              flush=True)  # fmt: skip


def late_note(late: int) -> str:
    """Steps computed in the run but reported as cached first (a reporting race, not reuse)."""
    return f" (and {late} computed steps reported as cached before their step_finished)" if late else ""


def run_mode(mode: str, scratch: Path, redis_url: str, redis_pid: int, args: argparse.Namespace) -> None:
    """Both series with the nodes on one shared Kubo, or on one Kubo each."""
    with contextlib.ExitStack() as stack:
        count = 1 if mode == "shared" else max(args.max_nodes, args.sleep_nodes)
        apis, pids = [], []
        for index in range(count):
            settings = Settings(
                data_dir=scratch / f"kubo-{mode}-{index}", redis_url=redis_url, log_level="WARNING"
            )
            services = stack.enter_context(EmbeddedServices(settings))
            apis.append(str(services.settings.ipfs_api))
            pid = services.processes["ipfs"].pid
            assert pid is not None
            pids.append(pid)
        cluster = Cluster(redis_url, apis, pids, redis_pid)
        try:
            for kind in args.kinds.split(","):
                counts = range(1, (args.max_nodes if kind == "cpu" else args.sleep_nodes) + 1)
                series(cluster, scratch, Shape(kind, args.steps, args.repeat, mode), counts)
        finally:
            cluster.client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--daemons", choices=("shared", "per-node", "both"), default="shared")
    parser.add_argument("--repeat", type=int, default=1, help="measured renders per N; the median is shown")
    parser.add_argument("--max-nodes", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--sleep-nodes", type=int, default=8)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--kinds", default="cpu,sleep", choices=("cpu,sleep", "cpu", "sleep"))
    args = parser.parse_args()
    modes = ["shared", "per-node"] if args.daemons == "both" else [args.daemons]
    with tempfile.TemporaryDirectory() as scratch, redis_alone(Path(scratch)) as services:
        redis_pid = services.processes["redis"].pid
        assert redis_pid is not None
        for mode in modes:
            run_mode(mode, Path(scratch), str(services.settings.redis_url), redis_pid, args)


if __name__ == "__main__":
    main()
