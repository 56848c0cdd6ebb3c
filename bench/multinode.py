"""Several node processes on one Redis rendering one recipe: speedup and duplicate executions.

N ``python -m node`` processes with one worker each share one Redis and one IPFS daemon. A
recipe of STEPS independent steps is submitted to the first node; the wall time runs from
submission to completion. Two kinds of step, each run with distinct parameters so none is a
cache hit:

(a) CPU-bound: a Gaussian blur of an 800x800 image, for N = 1 up to the core count;
(b) sleep-bound: the ``wait`` effect holding a small image for 200 ms (standing for work done on
    other machines), for N = 1 to 8, which shows the cost of coordination apart from cores.

Prints wall time (submission to the run's final event), speedup over N = 1, duplicate
executions (steps started more than once) and cache hits (both must be 0), all in one run.

    .venv/bin/python -m bench.multinode [--max-nodes N] [--sleep-nodes 8] [--steps 32]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import redis

from node.config import Settings
from node.executor.imaging import png_bytes
from node.services import EmbeddedServices
from node.testing import NodeProcess

IMAGE = np.random.default_rng(4).integers(0, 256, (800, 800, 3), dtype=np.uint8)


SMALL = np.random.default_rng(5).integers(0, 256, (16, 16, 3), dtype=np.uint8)


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


@dataclass(frozen=True)
class Events:
    """Where the runs' event streams are."""

    client: redis.Redis
    prefix: str


def render(
    nodes: list[NodeProcess], image_cid: str, steps: int, *, salt: int, kind: str, events: Events
) -> tuple[float, str]:
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
        raise RuntimeError(f"run {run_id} {status}")
    final: Any = events.client.xrevrange(f"{events.prefix}events:{run_id}", count=1)
    return int(final[0][0].split("-")[0]) / 1000 - started, run_id  # a stream id starts with ms


def executions(client: redis.Redis, prefix: str, run_id: str) -> tuple[int, int]:
    """Steps started more than once (duplicates) and steps that were cache hits: both must be 0."""
    entries: Any = client.xrange(f"{prefix}events:{run_id}")
    kinds = [(fields["kind"], json.loads(fields["data"]).get("cache_id")) for _, fields in entries]
    started = Counter(cache_id for kind, cache_id in kinds if kind == "step_started")
    hits = sum(1 for kind, _ in kinds if kind == "step_cached")
    return sum(count - 1 for count in started.values()), hits


def series(daemons: EmbeddedServices, scratch: Path, kind: str, counts: range, steps: int) -> None:
    """Wall time and speedup of one kind of step for each number of nodes."""
    client = redis.Redis.from_url(str(daemons.settings.redis_url), decode_responses=True)
    baseline = 0.0
    for count in counts:
        prefix = f"bench-{kind}{count}:"
        env = {
            "ARTDAG_REDIS_URL": str(daemons.settings.redis_url),
            "ARTDAG_IPFS_API": str(daemons.settings.ipfs_api),
            "ARTDAG_REDIS_PREFIX": prefix,
            "ARTDAG_WORKERS": "1",
            "ARTDAG_LOG_LEVEL": "WARNING",
        }
        nodes = [NodeProcess(scratch / f"{kind}{count}-{index}", env) for index in range(count)]
        try:
            for node in nodes:
                node.wait_healthy()
            image_cid = nodes[0].upload(png_bytes(IMAGE if kind == "cpu" else SMALL))["cid"]
            # Warm-up: four steps per node, so each node has run a step on this source (it is
            # in its local cache) before the measured render, which then times coordination.
            streams = Events(client, prefix)
            render(nodes, image_cid, 4 * count, salt=count, kind=kind, events=streams)
            elapsed, run_id = render(nodes, image_cid, steps, salt=100 + count, kind=kind, events=streams)
        finally:
            for node in nodes:
                node.popen.terminate()
            for node in nodes:
                node.popen.wait()
        baseline = baseline or elapsed
        repeated, hits = executions(client, prefix, run_id)
        speedup = baseline / elapsed
        print(f"({kind}) N={count}: {steps} steps in {elapsed:.2f} s, speedup {speedup:.2f} "
              f"(ideal {count}, target >= {0.85 * count:.2f}), duplicates {repeated}, "
              f"cache hits {hits}")  # fmt: skip
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-nodes", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--sleep-nodes", type=int, default=8)
    parser.add_argument("--steps", type=int, default=32)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as scratch,
        EmbeddedServices(Settings(data_dir=Path(scratch) / "daemons", log_level="WARNING")) as daemons,
    ):
        series(daemons, Path(scratch), "cpu", range(1, args.max_nodes + 1), args.steps)
        series(daemons, Path(scratch), "sleep", range(1, args.sleep_nodes + 1), args.steps)


if __name__ == "__main__":
    main()
