"""One long 720p clip through ``dog`` then ``sepia``, rendered as segments (parts) by one or two nodes.

The clip (testsrc2 + a sine tone, H.264 + AAC, 720p at 25 fps, 300 s by default) is made once.
A redis-server and one Kubo daemon are started here and shared; every measured render starts
fresh ``python -m node`` processes (``node.testing.NodeProcess``) on a Redis prefix of its own
(so no step of one render is a cache hit in another, the SOUND step included), with the clip
imported into the first node before the clock starts. Wall time runs from submitting the run
(``POST /runs``) to the run's final event (its time in the event stream). Each node gets
``ARTDAG_STEP_TIMEOUT=86400`` so that the unsegmented chain of a long clip is never cut off.

(a) one node with ``--workers`` workers (default: one per core) and ``segment_seconds = --segment``
    against raw ffmpeg: one command with the same filter graph and encoder settings as the
    node's unsegmented delivery encode, but ffmpeg's default threads (no ``-threads 4``). Ratio
    node / raw (the issue's target is <= 1.1). Also the same node with segmenting off.
(b) 1 node x 1 worker, 2 nodes x 1 worker (one Redis prefix, one Kubo), 1 node x 2 workers, all
    with the same segment length: wall times and speedups over 1 x 1.
(c) the cost of segmenting, from each run's steps (``GET /runs/{id}``: ``running_s``,
    ``queued_s``): the PARTs' summed running time against the unsegmented CHAIN step's, the
    SOUND and JOIN steps, and the overhead per segment = (wall - sum of PART running / workers)
    / segments, with its share of the wall time; also where the wall time went (before the
    first part, parts, after the last part, after the join).
(d) kill test: two nodes x 1 worker, the run submitted to the first; once a third of the parts
    are done and the second node holds a part, the second node is SIGKILLed. The run must
    complete on the survivor; prints which parts each node started and finished, the parts
    finished twice, the parts redone (held by the killed node), how long after the kill its part
    was taken again (its claim's lease lapses first), and processes of the killed node left alive.

Each render also reports the CPU seconds of the node processes (workers and their ffmpeg
included), Kubo and Redis. A summary block ends the output.

    .venv/bin/python -m bench.segments [--seconds 300] [--segment 10] [--workers N]
        [--sections a,b,d] [--kill-part-share 0.33] [--raw-threads4]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import redis

from bench.media import RECIPE, make_clip, raw_command
from bench.procs import CpuMeter, cpu_seconds, machine_busy_seconds, redis_alone
from node.config import Settings
from node.services import EmbeddedServices
from node.testing import NodeProcess

GAIN = 10.0
STATUS_POLL_S = 1.0
KILL_POLL_S = 0.25
LEFTOVER_POLL_S = 0.2
FINAL = ("completed", "failed", "cancelled")
FINAL_EVENTS = ("run_completed", "run_failed", "run_cancelled")
PART, SOUND, JOIN, CHAIN = "PART", "SOUND", "JOIN", "CHAIN"


@dataclass(frozen=True)
class Event:
    """One entry of a run's event stream: its time (from the stream id), kind and data."""

    at: float
    kind: str
    data: dict[str, Any]


@dataclass
class Cluster:
    """The shared Redis and Kubo, the clip, and where nodes keep their data."""

    redis_url: str
    ipfs_api: str
    scratch: Path
    clip: Path
    pids: dict[str, list[int]]  # "kubo" / "redis" -> pid
    client: redis.Redis = field(init=False)

    def __post_init__(self) -> None:
        self.client = redis.Redis.from_url(self.redis_url, decode_responses=True)

    def env(self, prefix: str, segment_s: float, workers: int) -> dict[str, str]:
        """A node's ARTDAG_* settings: the shared daemons, its prefix, segments and workers."""
        return {
            "ARTDAG_REDIS_URL": self.redis_url,
            "ARTDAG_IPFS_API": self.ipfs_api,
            "ARTDAG_REDIS_PREFIX": prefix,
            "ARTDAG_WORKERS": str(workers),
            "ARTDAG_SEGMENT_SECONDS": f"{segment_s:g}",
            "ARTDAG_STEP_TIMEOUT": "86400",
            "ARTDAG_IMPORT_ROOTS": str(self.clip.parent),
            "ARTDAG_LOG_LEVEL": "WARNING",
        }


@dataclass(frozen=True)
class Scenario:
    """What one measured render runs on: nodes, workers each, segment length (0: off)."""

    tag: str
    label: str
    nodes: int
    workers: int
    segment_s: float

    @property
    def prefix(self) -> str:
        return f"bench-seg-{self.tag}:"

    @property
    def total_workers(self) -> int:
        return self.nodes * self.workers


@dataclass
class Render:
    """One finished run: its wall time, the steps ``GET /runs/{id}`` shows, its events."""

    scenario: Scenario
    wall_s: float
    submit_s: float
    status: str
    steps: dict[str, dict[str, Any]]
    events: list[Event]
    cpu: dict[str, float] = field(default_factory=dict)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        """The steps of one type (PART, SOUND, JOIN, CHAIN)."""
        return [step for step in self.steps.values() if step.get("type") == kind]

    def running(self, kind: str) -> float:
        """The summed running time of the steps of one type."""
        return sum(float(step.get("running_s") or 0.0) for step in self.of_type(kind))


# --- nodes and runs -------------------------------------------------------------------------


def start_nodes(cluster: Cluster, scenario: Scenario) -> list[NodeProcess]:
    """The scenario's node processes, each healthy, with fresh data directories."""
    env = cluster.env(scenario.prefix, scenario.segment_s, scenario.workers)
    nodes = [
        NodeProcess(cluster.scratch / "nodes" / f"{scenario.tag}-{index}", dict(env))
        for index in range(scenario.nodes)
    ]
    try:
        for node in nodes:
            node.wait_healthy()
    except BaseException:
        stop_nodes(nodes)
        raise
    return nodes


def stop_nodes(nodes: list[NodeProcess]) -> None:
    """Stop the nodes still running (SIGTERM, then SIGKILL after 30 s)."""
    for node in nodes:
        if node.popen.poll() is None:
            node.popen.terminate()
    for node in nodes:
        try:
            node.popen.wait(30)
        except subprocess.TimeoutExpired:
            node.stop()


def import_clip(node: NodeProcess, clip: Path) -> str:
    """Store the clip in the node (``POST /cache/import``, from an import root); its CID."""
    query = urllib.parse.urlencode({"path": str(clip)})
    return str(node.call("POST", f"/cache/import?{query}")["cid"])


def read_events(client: redis.Redis, prefix: str, run_id: str) -> list[Event]:
    """The run's event stream; each entry's time is the milliseconds its id starts with."""
    entries: Any = client.xrange(f"{prefix}events:{run_id}")
    return [
        Event(int(entry_id.split("-")[0]) / 1000, fields["kind"], json.loads(fields["data"]))
        for entry_id, fields in entries
    ]


def wait_final(node: NodeProcess, run_id: str) -> str:
    """Poll ``GET /runs/{id}`` on ``node`` until the run has ended; its status."""
    while True:
        status = str(node.call("GET", f"/runs/{run_id}")["status"])
        if status in FINAL:
            return status
        time.sleep(STATUS_POLL_S)


def submit(node: NodeProcess, clip_cid: str) -> tuple[str, float, float]:
    """Start dog -> sepia on the clip; the run id, when it was submitted and how long that took."""
    started = time.time()
    run_id = node.start_run(RECIPE.format(gain=GAIN), [clip_cid])
    return run_id, started, time.time() - started


def finish(cluster: Cluster, node: NodeProcess, scenario: Scenario, run_id: str, started: float) -> Render:
    """Wait for the run on ``node``; its Render (wall time to the run's final event)."""
    status = wait_final(node, run_id)
    events = read_events(cluster.client, scenario.prefix, run_id)
    detail = node.call("GET", f"/runs/{run_id}")
    wall = events[-1].at - started
    return Render(scenario, wall, 0.0, status, dict(detail["steps"]), events)


def meter(cluster: Cluster, nodes: list[NodeProcess]) -> CpuMeter:
    """CPU per role: the node processes (with their workers and ffmpeg), Kubo, Redis."""
    return CpuMeter({"nodes": [node.pid for node in nodes], **cluster.pids})


def measure(cluster: Cluster, scenario: Scenario) -> Render:
    """Start the scenario's nodes, import the clip, render once, stop the nodes."""
    nodes = start_nodes(cluster, scenario)
    try:
        clip_cid = import_clip(nodes[0], cluster.clip)
        cpu = meter(cluster, nodes)
        cpu.start()
        run_id, started, submit_s = submit(nodes[0], clip_cid)
        render = finish(cluster, nodes[0], scenario, run_id, started)
        render.cpu, render.submit_s = cpu.stop(), submit_s
    finally:
        stop_nodes(nodes)
    if render.status != "completed":
        logs = [str(node.log_path) for node in nodes]
        raise RuntimeError(f"{scenario.label}: run {run_id} {render.status}; node logs: {logs}")
    print_render(render)
    return render


@dataclass(frozen=True)
class Raw:
    """One raw ffmpeg render: wall and CPU seconds, what the rest of the machine used meanwhile."""

    wall_s: float
    cpu_s: float
    rest_s: float
    command: list[str]


def time_raw(clip: Path, keep_threads: bool = False) -> Raw:
    """Time the raw ffmpeg command (``-threads 4`` dropped unless ``keep_threads``: ffmpeg then
    picks its own thread counts)."""
    command = raw_command(clip, GAIN, clip.with_name("raw.mp4"))
    if not keep_threads:
        at = command.index("-threads")
        command = command[:at] + command[at + 2 :]
    before, busy = resource.getrusage(resource.RUSAGE_CHILDREN), machine_busy_seconds()
    started = time.perf_counter()
    subprocess.run(command, check=True)
    wall = time.perf_counter() - started
    after, busy = resource.getrusage(resource.RUSAGE_CHILDREN), machine_busy_seconds() - busy
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return Raw(wall, cpu, max(0.0, busy - cpu), command)


# --- printing ---------------------------------------------------------------------------------


def cpu_text(cpu: dict[str, float]) -> str:
    return ", ".join(f"{role} {seconds:.1f}" for role, seconds in cpu.items())


def print_render(render: Render) -> None:
    """One line: what ran, its wall time, its steps and CPU."""
    parts = render.of_type(PART)
    shape = f"{len(parts)} parts" if parts else f"{len(render.steps)} step(s), unsegmented"
    print(f"  {render.scenario.label}: wall {render.wall_s:.2f} s from submit to completed "
          f"(POST /runs took {render.submit_s:.2f} s); {shape}; cpu s: {cpu_text(render.cpu)}",
          flush=True)  # fmt: skip


def phases(render: Render) -> dict[str, float | int]:
    """Where a segmented run's wall time went, from its events (seconds)."""
    start = render.events[0].at
    begun = [e.at for e in render.events if e.kind == "step_started" and _is_part(e)]
    ended = [e.at for e in render.events if e.kind == "step_finished" and _is_part(e)]
    joined = [
        e.at for e in render.events if e.kind == "step_finished" and e.data.get("step") == _join(render)
    ]
    sound = {e.kind: e.at for e in render.events if str(e.data.get("step", "")).endswith("@sound")}
    end = render.events[-1].at
    if not begun or not ended or not joined:
        return {}
    found: dict[str, float | int] = {
        "run queued -> first part started": min(begun) - start,
        "first part started -> last part finished": max(ended) - min(begun),
        "last part finished -> join finished": max(joined) - max(ended),
        "join finished -> run completed": end - max(joined),
    }
    if "step_started" in sound and "step_finished" in sound:
        found["run queued -> SOUND started"] = sound["step_started"] - start
        found["run queued -> SOUND finished"] = sound["step_finished"] - start
        found["parts finished before SOUND started"] = sum(1 for at in ended if at <= sound["step_started"])
    return found


def _is_part(event: Event) -> bool:
    return "@" in str(event.data.get("step", "")) and not str(event.data["step"]).endswith("@sound")


def _join(render: Render) -> str:
    return next((name for name, step in render.steps.items() if step.get("type") == JOIN), "")


def print_costs(render: Render, whole: Render | None) -> dict[str, float]:
    """(c) for one segmented render: part compute against the whole chain, overhead per segment."""
    parts = render.of_type(PART)
    if not parts:
        return {}
    count, workers = len(parts), render.scenario.total_workers
    running = [float(step.get("running_s") or 0.0) for step in parts]
    queued = [float(step.get("queued_s") or 0.0) for step in parts]
    summed = sum(running)
    overhead = (render.wall_s - summed / workers) / count
    print(f"  {render.scenario.label} ({count} parts of {render.scenario.segment_s:g} s, {workers} workers):")
    print(f"    sum of PART running_s {summed:.2f} s (per part: mean {statistics.mean(running):.2f}, "
          f"min {min(running):.2f}, max {max(running):.2f}); PART queued_s mean "
          f"{statistics.mean(queued):.2f}, max {max(queued):.2f}")  # fmt: skip
    if whole is not None and whole.of_type(CHAIN):
        chain = whole.running(CHAIN)
        print(f"    unsegmented CHAIN running_s {chain:.2f} s: parts / chain = {summed / chain:.3f}, "
              f"extra compute per part {(summed - chain) / count:.3f} s")  # fmt: skip
    join = render.of_type(JOIN)
    join_queued = float(join[0].get("queued_s") or 0.0) if join else 0.0
    print(f"    SOUND running_s {render.running(SOUND):.2f} s; JOIN running_s {render.running(JOIN):.2f} s "
          f"(queued_s {join_queued:.2f})")  # fmt: skip
    print(f"    overhead per segment = (wall {render.wall_s:.2f} - {summed:.2f} / {workers}) / {count} "
          f"= {overhead:.3f} s; all segments' overhead = {100 * overhead * count / render.wall_s:.1f} % "
          "of the wall time")  # fmt: skip
    for name, value in phases(render).items():
        print(f"    {name}: {value:.2f} s" if isinstance(value, float) else f"    {name}: {value}")
    return {"overhead_s": overhead, "share": overhead * count / render.wall_s}


# --- (d) the kill test ---------------------------------------------------------------------------


@dataclass
class KillResult:
    """What the kill test saw."""

    status: str
    wall_s: float
    killed_after_s: float
    started: dict[str, list[str]]  # part -> nodes that started it, in order
    finished: dict[str, list[str]]  # part -> nodes that finished it
    held: list[str]  # parts the killed node was computing when killed
    retaken_after_s: float | None  # from the kill to the survivor starting a held part
    leftovers: list[str]  # processes of the killed node that outlived it


def part_states(events: list[Event]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Per part: the nodes that started it and those that finished it, in order."""
    started: dict[str, list[str]] = defaultdict(list)
    finished: dict[str, list[str]] = defaultdict(list)
    for event in events:
        if not _is_part(event):
            continue
        if event.kind == "step_started":
            started[str(event.data["step"])].append(str(event.data.get("node")))
        elif event.kind == "step_finished":
            finished[str(event.data["step"])].append(str(event.data.get("node")))
    return dict(started), dict(finished)


def kill_moment(cluster: Cluster, prefix: str, run_id: str, victim: str, want_done: int) -> list[str]:
    """Wait until ``want_done`` parts are done and ``victim`` is computing one; the parts it holds
    (empty if the run ended first)."""
    while True:
        events = read_events(cluster.client, prefix, run_id)
        if any(event.kind in FINAL_EVENTS for event in events):
            return []
        started, finished = part_states(events)
        holding = [
            part
            for part, nodes in started.items()
            if victim in nodes and victim not in finished.get(part, [])
        ]
        if len(finished) >= want_done and holding:
            return holding
        time.sleep(KILL_POLL_S)


def process_name(pid: int) -> str | None:
    """The command name of a live (not zombie) process; None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return None if text[text.rindex(")") + 2] == "Z" else text[text.index("(") + 1 : text.rindex(")")]


class Leftovers(threading.Thread):
    """Watches the processes of a killed node that outlived it: how long each lived after the
    kill and the CPU seconds it used meanwhile."""

    def __init__(self, pids: set[int], killed_at: float) -> None:
        super().__init__(daemon=True)
        self.killed_at = killed_at
        self.names = {pid: name for pid in sorted(pids) if (name := process_name(pid)) is not None}
        self.first = {pid: cpu_seconds(pid) for pid in self.names}
        self.last = dict(self.first)
        self.ended: dict[int, float] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(LEFTOVER_POLL_S):
            for pid in self.names:
                if pid in self.ended:
                    continue
                if process_name(pid) is None:
                    self.ended[pid] = time.time() - self.killed_at
                else:
                    self.last[pid] = cpu_seconds(pid)

    def finish(self) -> list[str]:
        """Stop watching, SIGKILL (by pid) what still lives; a line per leftover."""
        self.done.set()
        self.join()
        lines = []
        for pid, name in self.names.items():
            used = self.last[pid] - self.first[pid]
            if pid in self.ended:
                lines.append(f"{pid} {name}: ended {self.ended[pid]:.1f} s after the kill, {used:.1f} cpu s")
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                lines.append(f"{pid} {name}: still alive when the run ended ({used:.1f} cpu s), killed now")
        return lines


def descendants(pid: int) -> set[int]:
    """``pid`` and every live process under it."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                text = (entry / "stat").read_text()
            except OSError:
                continue
            children[int(text[text.rindex(")") + 2 :].split()[1])].append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        found.add(current)
        todo.extend(children.get(current, []))
    return found


def kill_test(cluster: Cluster, segment_s: float, share: float) -> tuple[KillResult, dict[str, str]]:
    """(d): two nodes x 1 worker; SIGKILL the second once ``share`` of the parts are done."""
    scenario = Scenario("kill", "2 nodes x 1 worker, second node killed", 2, 1, segment_s)
    nodes = start_nodes(cluster, scenario)
    try:
        names = {str(node.wait_healthy()["node_id"]): f"node{index}" for index, node in enumerate(nodes)}
        survivor, victim = nodes
        victim_id = next(node_id for node_id, name in names.items() if name == "node1")
        clip_cid = import_clip(survivor, cluster.clip)
        run_id, started, _ = submit(survivor, clip_cid)
        planned = survivor.call("GET", f"/runs/{run_id}")["steps"].values()  # every step, from the start
        total = sum(1 for step in planned if step.get("type") == PART)
        held = kill_moment(cluster, scenario.prefix, run_id, victim_id, max(1, round(share * total)))
        tree = descendants(victim.pid)
        victim.popen.send_signal(signal.SIGKILL)
        victim.popen.wait()
        killed_at = time.time()
        watcher = Leftovers(tree - {victim.pid}, killed_at)
        watcher.start()
        render = finish(cluster, survivor, scenario, run_id, started)
        leftovers = watcher.finish()
    finally:
        stop_nodes(nodes)
    return kill_result(render, held, killed_at - started, started, leftovers), names


def kill_result(
    render: Render, held: list[str], killed_after: float, started: float, leftovers: list[str]
) -> KillResult:
    """The kill test's figures from the finished run's events."""
    begun, done = part_states(render.events)
    killed_at = started + killed_after
    retaken = [
        event.at - killed_at
        for event in render.events
        if event.kind == "step_started" and event.data.get("step") in held and event.at > killed_at
    ]
    return KillResult(
        render.status, render.wall_s, killed_after, begun, done, held, min(retaken, default=None), leftovers
    )


def print_kill(result: KillResult, names: dict[str, str]) -> None:
    """Which parts each node rendered, twice-finished parts, redone parts, leftovers."""
    print(f"  run {result.status} on the survivor (node0) in {result.wall_s:.2f} s; node1 SIGKILLed "
          f"{result.killed_after_s:.2f} s after submit while holding {result.held or 'nothing'}")  # fmt: skip
    by_node: dict[str, list[str]] = defaultdict(list)
    for part, nodes in sorted(result.finished.items(), key=lambda item: _part_index(item[0])):
        for node in nodes:
            by_node[names.get(node, node)].append(part)
    for name in sorted(set(names.values())):
        parts = by_node.get(name, [])
        print(f"    {name} finished {len(parts)} parts: {', '.join(parts) or '-'}")
    twice = [part for part, nodes in result.finished.items() if len(nodes) > 1]
    restarted = [part for part, nodes in result.started.items() if len(nodes) > 1]
    print(f"    parts finished twice (computed twice): {len(twice)} {twice}")
    print(f"    parts started more than once: {len(restarted)} {restarted} (at most the "
          f"{len(result.held)} held by the killed node should be: "
          f"{'ok' if set(restarted) <= set(result.held) else 'MORE'})")  # fmt: skip
    retaken = "never" if result.retaken_after_s is None else f"{result.retaken_after_s:.2f} s"
    print(f"    the killed node's part was started again by the survivor {retaken} after the kill")
    print(f"    processes of the killed node that outlived it: {len(result.leftovers) or 'none'}")
    for line in result.leftovers:
        print(f"      {line}")


def _part_index(name: str) -> int:
    tail = name.rsplit("@", 1)[-1]
    return int(tail) if tail.isdigit() else -1


# --- sections -------------------------------------------------------------------------------------


def print_raw(label: str, raw: Raw) -> None:
    print(f"  {label}: wall {raw.wall_s:.2f} s; cpu s: ffmpeg {raw.cpu_s:.1f}, "
          f"rest of machine {raw.rest_s:.1f}", flush=True)  # fmt: skip


def section_a(cluster: Cluster, args: argparse.Namespace, summary: dict[str, str]) -> dict[str, Render]:
    """(a): raw ffmpeg, the node segmented, the node unsegmented."""
    print(f"(a) one node vs raw ffmpeg, {cluster.clip.name}", flush=True)
    raw = time_raw(cluster.clip)
    raw_s = raw.wall_s
    print("  raw command (ffmpeg's default threads):", " ".join(raw.command))
    print_raw("raw ffmpeg, default threads", raw)
    summary["raw ffmpeg (default threads) s"] = f"{raw_s:.2f}"
    if args.raw_threads4:
        fixed = time_raw(cluster.clip, keep_threads=True)
        print_raw("raw ffmpeg, -threads 4 (as the node)", fixed)
        summary["raw ffmpeg (-threads 4) s"] = f"{fixed.wall_s:.2f}"
    seg = Scenario("a-seg", f"1 node x {args.workers} workers, {args.segment:g} s segments", 1,
                   args.workers, args.segment)  # fmt: skip
    whole = Scenario("a-whole", f"1 node x {args.workers} workers, segmenting off", 1, args.workers, 0.0)
    renders = {"seg": measure(cluster, seg), "whole": measure(cluster, whole)}
    for key, render in renders.items():
        ratio = render.wall_s / raw_s
        print(f"  ratio node / raw, {render.scenario.label}: {ratio:.3f} (target <= 1.1)", flush=True)
        summary[f"{render.scenario.label} s"] = f"{render.wall_s:.2f}"
        summary[f"ratio node / raw ({'segmented' if key == 'seg' else 'unsegmented'})"] = f"{ratio:.3f}"
    return renders


def section_b(cluster: Cluster, args: argparse.Namespace, summary: dict[str, str],
              earlier: dict[str, Render]) -> dict[str, Render]:  # fmt: skip
    """(b): 1 x 1, 2 x 1 and 1 x 2 (reused from (a) when it ran with 2 workers)."""
    print(f"(b) nodes sharing one Redis prefix, {args.segment:g} s segments", flush=True)
    scenarios = {
        "1x1": Scenario("b-1x1", "1 node x 1 worker", 1, 1, args.segment),
        "2x1": Scenario("b-2x1", "2 nodes x 1 worker", 2, 1, args.segment),
        "1x2": Scenario("b-1x2", "1 node x 2 workers", 1, 2, args.segment),
    }
    renders = {}
    for key, scenario in scenarios.items():
        reuse = earlier.get("seg")
        if key == "1x2" and reuse is not None and reuse.scenario.workers == 2:
            print(f"  {scenario.label}: the segmented render of (a), {reuse.wall_s:.2f} s")
            renders[key] = reuse
            continue
        renders[key] = measure(cluster, scenario)
    base = renders["1x1"].wall_s
    for key in ("2x1", "1x2"):
        speedup = base / renders[key].wall_s
        print(f"  speedup {scenarios[key].label} over 1 node x 1 worker: {speedup:.2f}", flush=True)
        summary[f"{scenarios[key].label} s"] = f"{renders[key].wall_s:.2f}"
        summary[f"speedup {key} over 1x1"] = f"{speedup:.2f}"
    summary["1 node x 1 worker s"] = f"{base:.2f}"
    return renders


def section_c(renders: list[Render], whole: Render | None, segment_s: float, summary: dict[str, str]) -> None:
    """(c): the cost per segment of every segmented render."""
    print(f"(c) cost per segment ({segment_s:g} s segments)", flush=True)
    if whole is not None and whole.of_type(CHAIN):
        print(f"  unsegmented CHAIN step running_s {whole.running(CHAIN):.2f} s "
              f"(its run's wall {whole.wall_s:.2f} s)")  # fmt: skip
    seen: set[int] = set()
    for render in renders:
        if id(render) in seen:
            continue
        seen.add(id(render))
        costs = print_costs(render, whole)
        if costs:
            summary[f"overhead per segment, {render.scenario.label} s"] = (
                f"{costs['overhead_s']:.3f} ({100 * costs['share']:.1f} % of wall)"
            )


def section_d(cluster: Cluster, args: argparse.Namespace, summary: dict[str, str]) -> None:
    """(d): the kill test."""
    print(f"(d) kill test: 2 nodes x 1 worker, {args.segment:g} s segments", flush=True)
    result, names = kill_test(cluster, args.segment, args.kill_part_share)
    if not result.held:
        print("  the run ended before node1 held a part: nothing was killed")
    print_kill(result, names)
    twice = sum(1 for nodes in result.finished.values() if len(nodes) > 1)
    summary["kill test"] = f"{result.status} in {result.wall_s:.2f} s, parts computed twice {twice}"


def print_summary(title: str, summary: dict[str, str]) -> None:
    width = max(len(key) for key in summary) + 2
    print(title)
    for key, value in summary.items():
        print(f"  {key:<{width}} {value}")


def run(cluster: Cluster, args: argparse.Namespace) -> None:
    sections = set(args.sections.split(","))
    summary: dict[str, str] = {}
    renders = section_a(cluster, args, summary) if "a" in sections else {}
    more = section_b(cluster, args, summary, renders) if "b" in sections else {}
    segmented = [render for render in (renders.get("seg"), *more.values()) if render is not None]
    if segmented:
        section_c(segmented, renders.get("whole"), args.segment, summary)
    if "d" in sections:
        section_d(cluster, args, summary)
    print_summary(f"summary: dog -> sepia on {cluster.clip.name}, {args.segment:g} s segments", summary)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    sys.exit(128 + signum)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=300, help="the clip's length")
    parser.add_argument(
        "--segment", type=float, default=10.0, help="segment_seconds of the segmented renders"
    )
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)), help="workers in (a)")
    parser.add_argument("--sections", default="a,b,d", help="which of a, b, d to run ((c) uses a and b)")
    parser.add_argument("--kill-part-share", type=float, default=0.33, help="(d): parts done before the kill")
    parser.add_argument("--raw-threads4", action="store_true", help="(a): also time raw with -threads 4")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # ``timeout``: stop the nodes and daemons first
    with tempfile.TemporaryDirectory() as scratch, redis_alone(Path(scratch)) as redis_services:
        settings = Settings(data_dir=Path(scratch) / "kubo", redis_url=redis_services.settings.redis_url,
                            log_level="WARNING")  # fmt: skip
        with EmbeddedServices(settings) as kubo:
            (Path(scratch) / "clips").mkdir()
            started = time.perf_counter()
            clip = make_clip(Path(scratch) / "clips" / f"clip-{args.seconds}s-720p.mp4", args.seconds)
            print(
                f"clip made in {time.perf_counter() - started:.1f} s ({clip.stat().st_size / 2**20:.1f} MiB)"
            )
            pids = {"kubo": [kubo.processes["ipfs"].pid], "redis": [redis_services.processes["redis"].pid]}
            cluster = Cluster(
                str(redis_services.settings.redis_url), str(kubo.settings.ipfs_api), Path(scratch), clip,
                {role: [pid for pid in found if pid is not None] for role, found in pids.items()},
            )  # fmt: skip
            try:
                run(cluster, args)
            finally:
                cluster.client.close()


if __name__ == "__main__":
    main()
