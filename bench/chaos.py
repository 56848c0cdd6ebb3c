"""Chaos: ``kill -9`` at random moments while two nodes render, and what it cost. Not a test.

Two ``python -m node`` processes (one worker each, a Kubo daemon each, which they supervise)
share one redis-server. The script keeps IN_FLIGHT multi-step runs going (a chain of three
effects on a small image, each run its own parameters, submitted to a random live node) and,
every 0.2-1.5 s, kills one of: a node, a step worker, the shared Redis, a node's Kubo daemon
(``--kills`` of them; the seed is printed, ``--seed`` repeats a sequence). What is killed comes
back the way it would in production: the node restarts its Kubo itself; the script, standing
for systemd, starts a killed node again (same data directory, so the same node id) and the
shared Redis after a second.

Then it waits for every accepted run to end and prints: runs accepted, completed, and **lost**
(ended failed, or never ended: none of these steps can fail on its own, so every failure is
one the kills caused, whatever its message; the target is 0); step executions beyond one per
step (re-executions after kills); and the **takeover time** after a node's death: from the
kill to the next start of a step that node was computing, by any node (p50, p99). The
baseline, measured first in the same run with no kills, is the runs completed per minute; the
ratio says what the chaos cost in throughput.

    .venv/bin/python -m bench.chaos [--kills 200] [--seed N] [--calm 30]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import tempfile
import time
import urllib.error
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import redis

from bench.procs import parents, redis_alone
from node.pixels.imaging import png_bytes
from node.services import EmbeddedServices
from node.testing import NodeProcess

IN_FLIGHT = 4
IMAGE = png_bytes(np.random.default_rng(11).integers(0, 256, (160, 160, 3), dtype=np.uint8))
FINAL = ("completed", "failed", "cancelled")
TARGETS = ("node", "worker", "redis", "kubo")
DRAIN_S = 900.0
RESTART_AFTER_S = 1.0
KIND_PATIENCE_S = 20.0


def recipe(salt: int) -> str:
    sigma = 0.5 + salt / 1_000_000  # each run its own parameters: no cache hits
    return (
        "name: chaos\ndag:\n  nodes:\n    - {id: src, type: SOURCE, config: {input: true}}\n"
        f"    - {{id: a, type: EFFECT, config: {{effect: blur, sigma: {sigma}}}, inputs: [src]}}\n"
        "    - {id: b, type: EFFECT, config: {effect: sepia}, inputs: [a]}\n"
        "    - {id: c, type: EFFECT, config: {effect: invert}, inputs: [b]}\n  output: c\n"
    )


@dataclass
class Cluster:
    scratch: Path
    redis_services: EmbeddedServices
    prefix: str
    nodes: list[NodeProcess] = field(default_factory=list)
    node_ids: list[str] = field(default_factory=list)

    @property
    def redis_url(self) -> str:
        return str(self.redis_services.settings.redis_url)

    def env(self) -> dict[str, str]:
        return {
            "ARTDAG_REDIS_URL": self.redis_url,
            "ARTDAG_REDIS_PREFIX": self.prefix,
            "ARTDAG_WORKERS": "1",
            "ARTDAG_LEASE": "10",
            "ARTDAG_HEARTBEAT": "1",
            "ARTDAG_LOG_LEVEL": "WARNING",
        }

    def start(self, index: int) -> NodeProcess:
        """Start node ``index`` (again, on its data directory and port, if it ran before)."""
        if index < len(self.nodes):
            self.nodes[index] = NodeProcess(
                self.nodes[index].data_dir, self.env(), port=self.nodes[index].port
            )
        else:
            self.nodes.append(NodeProcess(self.scratch / f"node{index}", self.env()))
        return self.nodes[index]

    def live(self) -> list[NodeProcess]:
        return [node for node in self.nodes if node.popen.poll() is None]


def submit(cluster: Cluster, source: str, salt: int) -> str | None:
    """A run submitted to a random live node; None if no node accepted it (not a promise)."""
    for node in random.sample(cluster.live(), len(cluster.live())):
        try:
            return node.start_run(recipe(salt), [source])
        except (OSError, urllib.error.HTTPError):
            continue
    return None


def statuses(client: redis.Redis, prefix: str, run_ids: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    try:
        raw = client.mget([f"{prefix}run:{run_id}" for run_id in run_ids]) if run_ids else []
    except redis.RedisError:
        return found
    for run_id, item in zip(run_ids, raw, strict=True):
        if item:
            found[run_id] = str(json.loads(item)["status"])
    return found


def events(client: redis.Redis, prefix: str, run_id: str) -> list[dict[str, Any]]:
    entries: Any = client.xrange(f"{prefix}events:{run_id}")
    return [{"kind": fields[b"kind"].decode(), "id": entry_id.decode(), **json.loads(fields[b"data"])}
            for entry_id, fields in entries]  # fmt: skip


@dataclass
class Kill:
    at: float  # time.time()
    target: str
    node_id: str = ""


def workers_of(node: NodeProcess) -> list[int]:
    tree = parents()
    children = [pid for pid, parent in tree.items() if parent == node.pid]
    found = []
    for pid in children:
        try:
            if b"node.executor.worker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            continue
    return found


def kill_one(cluster: Cluster, target: str, restarts: list[tuple[float, str, int]]) -> Kill | None:
    """Kill one ``target`` (None if there was none to kill just then: no worker busy, a node
    or Redis still down; the caller tries the same kind again shortly, so the kinds stay
    balanced)."""
    if target == "redis":
        return _kill_redis(cluster, restarts)
    return _kill_in_node(cluster, target, restarts)


def _kill_redis(cluster: Cluster, restarts: list[tuple[float, str, int]]) -> Kill | None:
    proc = cluster.redis_services.processes["redis"]
    if proc.exit_code() is not None or proc.pid is None:
        return None
    os.kill(proc.pid, signal.SIGKILL)
    restarts.append((time.monotonic() + RESTART_AFTER_S, "redis", -1))
    return Kill(time.time(), "redis")


def _kill_in_node(cluster: Cluster, target: str, restarts: list[tuple[float, str, int]]) -> Kill | None:
    live = cluster.live()
    if not live:
        return None
    node = random.choice(live)  # noqa: S311 - chaos, not secrets
    index = cluster.nodes.index(node)
    node_id = cluster.node_ids[index]
    if target == "node":
        os.kill(node.pid, signal.SIGKILL)
        node.popen.wait(30)
        restarts.append((time.monotonic() + RESTART_AFTER_S, "node", index))
        return Kill(time.time(), "node", node_id)
    if target == "worker":
        pids = workers_of(node)
        if not pids:
            return None
        os.kill(random.choice(pids), signal.SIGKILL)  # noqa: S311
        return Kill(time.time(), "worker", node_id)
    try:
        pid = int(node.daemons()["ipfs"]["pid"])
        os.kill(pid, signal.SIGKILL)
    except (OSError, KeyError, ValueError):
        return None
    return Kill(time.time(), "kubo", node_id)


def restart_due(cluster: Cluster, restarts: list[tuple[float, str, int]]) -> None:
    for item in [item for item in restarts if item[0] <= time.monotonic()]:
        restarts.remove(item)
        _, what, index = item
        if what == "redis":
            cluster.redis_services.restart("redis")
        else:
            cluster.start(index)


def keep_going(
    cluster: Cluster, client: redis.Redis, source: str, run_ids: list[str], salt: list[int]
) -> None:
    """Top the work up to IN_FLIGHT unfinished runs."""
    unfinished = [
        run_id for run_id, status in statuses(client, cluster.prefix, run_ids).items() if status not in FINAL
    ]
    for _ in range(IN_FLIGHT - len(unfinished)):
        salt[0] += 1
        run_id = submit(cluster, source, salt[0])
        if run_id is not None:
            run_ids.append(run_id)


def takeovers(client: redis.Redis, prefix: str, run_ids: list[str], kills: list[Kill]) -> list[float]:
    """For each node kill, the seconds until a step the dead node was computing started again."""
    started: list[tuple[float, str, str]] = []  # (time, node id, cache id) of every step start
    ended: dict[str, float] = {}  # cache id -> first finish
    for run_id in run_ids:
        for event in events(client, prefix, run_id):
            at = int(event["id"].split("-")[0]) / 1000
            if event["kind"] == "step_started":
                started.append((at, event.get("node", ""), event["cache_id"]))
            elif event["kind"] == "step_finished":
                ended.setdefault(event["cache_id"], at)
    found = []
    for kill in (kill for kill in kills if kill.target == "node"):
        computing = {
            cache_id for at, node_id, cache_id in started
            if node_id == kill.node_id and at <= kill.at and ended.get(cache_id, float("inf")) > kill.at
        }  # fmt: skip
        for cache_id in computing:
            later = [at for at, _, other in started if other == cache_id and at > kill.at]
            if later:
                found.append(min(later) - kill.at)
    return found


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def calm(cluster: Cluster, client: redis.Redis, source: str, seconds: float) -> float:
    """The baseline: runs completed per minute with no kills."""
    run_ids: list[str] = []
    salt = [2_000_000]  # apart from the chaos runs' salts, which start at 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        keep_going(cluster, client, source, run_ids, salt)
        time.sleep(0.2)
    done = sum(1 for status in statuses(client, cluster.prefix, run_ids).values() if status == "completed")
    return done / seconds * 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--calm", type=float, default=30.0, help="seconds of the no-kill baseline")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    random.seed(seed)
    print(f"seed {seed} (repeat with --seed {seed}); {args.kills} kills; two nodes, one Redis")
    with tempfile.TemporaryDirectory(prefix="artdag-chaos-") as scratch_dir:
        scratch = Path(scratch_dir)
        with redis_alone(scratch) as redis_services:
            cluster = Cluster(scratch, redis_services, prefix="chaos:")
            client = redis.Redis.from_url(cluster.redis_url, socket_timeout=5)
            try:
                run(cluster, client, args)
            finally:
                for node in cluster.nodes:
                    node.popen.terminate()
                for node in cluster.nodes:
                    node.popen.wait(60)


def run(cluster: Cluster, client: redis.Redis, args: argparse.Namespace) -> None:
    for index in range(2):
        cluster.start(index)
    for node in cluster.nodes:
        cluster.node_ids.append(str(node.wait_healthy()["node_id"]))
    source = cluster.nodes[0].upload(IMAGE)["cid"]
    baseline = calm(cluster, client, source, args.calm)
    print(f"baseline: {baseline:.1f} runs completed per minute with no kills")
    run_ids: list[str] = []
    kills: list[Kill] = []
    restarts: list[tuple[float, str, int]] = []
    salt = [0]
    skipped = 0  # kinds given up on for a turn (none to kill for KIND_PATIENCE_S)
    started = time.monotonic()
    next_kill = started
    while len(kills) < args.kills:
        restart_due(cluster, restarts)
        keep_going(cluster, client, source, run_ids, salt)
        if time.monotonic() >= next_kill:
            killed = kill_one(cluster, TARGETS[(len(kills) + skipped) % len(TARGETS)], restarts)
            if killed is not None:  # else the same kind again at the next turn, for a while
                kills.append(killed)
                next_kill = time.monotonic() + random.uniform(0.2, 1.5)  # noqa: S311
            elif time.monotonic() > next_kill + KIND_PATIENCE_S:
                skipped += 1
                next_kill = time.monotonic()
        time.sleep(0.05)
    chaos_s = time.monotonic() - started
    while restarts:
        restart_due(cluster, restarts)
        time.sleep(0.1)
    deadline = time.monotonic() + DRAIN_S
    ended: dict[str, str] = {}
    while time.monotonic() < deadline:
        ended = {
            run_id: status
            for run_id, status in statuses(client, cluster.prefix, run_ids).items()
            if status in FINAL
        }
        if len(ended) == len(run_ids):
            break
        time.sleep(1.0)
    report(cluster, client, Outcome(run_ids, kills, ended, chaos_s, baseline))


@dataclass(frozen=True)
class Outcome:
    run_ids: list[str]
    kills: list[Kill]
    ended: dict[str, str]  # run id -> final status
    chaos_s: float
    baseline: float  # runs completed per minute with no kills


def report(cluster: Cluster, client: redis.Redis, result: Outcome) -> None:
    run_ids, kills, ended, chaos_s = result.run_ids, result.kills, result.ended, result.chaos_s
    counts = Counter(kill.target for kill in kills)
    print(f"kills: {len(kills)} in {chaos_s:.0f} s ({dict(sorted(counts.items()))})")
    outcome = Counter(ended.values())
    never = len(run_ids) - len(ended)
    failed_on_their_own = 0
    executions = 0
    steps = 0
    for run_id in run_ids:
        stream = events(client, cluster.prefix, run_id)
        failed_on_their_own += (
            any(event["kind"] == "step_failed" for event in stream) and ended.get(run_id) == "failed"
        )
        per_step = Counter(event["cache_id"] for event in stream if event["kind"] == "step_started")
        executions += sum(per_step.values())
        steps += len(per_step)
    lost = outcome.get("failed", 0) + never  # no step of this workload can fail on its own
    for run_id in [run_id for run_id, status in ended.items() if status == "failed"][:5]:
        raw = client.get(f"{cluster.prefix}run:{run_id}")
        print(f"  failed {run_id}: {json.loads(raw)['error'] if raw else '?'}")
        for log_path in sorted(cluster.scratch.glob("node-*.log")):  # where an internal error says why
            lines = log_path.read_text(errors="replace").splitlines()
            for index, line in enumerate(lines):
                if run_id in line and "unexpectedly" in line:
                    print("\n".join(f"    {text}" for text in lines[index : index + 30]))
    print(f"runs accepted {len(run_ids)}: completed {outcome.get('completed', 0)}, "
          f"failed {outcome.get('failed', 0)} (of which with a step_failed event: {failed_on_their_own}), "
          f"never ended {never}")  # fmt: skip
    print(f"LOST: {lost} (target 0)")
    print(f"step executions {executions} for {steps} steps: {executions - steps} re-executions after kills")
    times = takeovers(client, cluster.prefix, run_ids, kills)
    if times:
        print(f"takeover after a node's death ({len(times)} steps): p50 {statistics.median(times):.1f} s, "
              f"p99 {percentile(times, 0.99):.1f} s (lease 10 s)")  # fmt: skip
    per_minute = outcome.get("completed", 0) / chaos_s * 60
    ratio = per_minute / result.baseline if result.baseline else float("nan")
    base = result.baseline
    print(f"throughput under chaos: {per_minute:.1f} runs/min; baseline {base:.1f}; ratio {ratio:.2f}")


if __name__ == "__main__":
    main()
