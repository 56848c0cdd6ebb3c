"""The executor's overheads: re-running a computed recipe, and scheduling trivial steps.

(a) A 100-step chain is rendered, then submitted again: the second run's wall time and how many
    steps it executed (must be 0: every step is a cache hit).
(b) 500 independent trivial steps (``brightness`` with one SOURCE, a 16x16 PNG): wall time per
    step through the scheduler (worker IPC, IPFS add and pin, indexes, signed receipts) next to
    calling the same effect on the same pixels in a loop in this process (the baseline), as a
    ratio; and the CPU seconds per step of each process (this process, which runs the node's
    app; its step workers; Kubo; Redis), which says where the time goes.

Each repeat renders from a new source image, so no step of one repeat is a cache hit in the
next; the figures are the median of the repeats. For reference, ``bench.celery_baseline``
measures Celery's no-op tasks/s on the same machine (tasks that store nothing).

Uses the node's own wiring (``Node.open``) on embedded daemons
(Kubo and Redis).

    .venv/bin/python -m bench.executor [--chain 100] [--trivial 500] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import uvloop

from bench.procs import CpuMeter, parents
from bench.report import print_medians
from node.assembly import Node
from node.config import Settings
from node.executor.recipe import parse_recipe
from node.executor.run_manager import Submission
from node.pixels.effects import EFFECTS
from node.pixels.imaging import png_bytes
from node.services import EmbeddedServices
from node.sync.index import ContentEntry


def chain_recipe(length: int) -> str:
    nodes = ["    - {id: n0, type: SOURCE, config: {input: true}}"]
    effects = ["invert", "grayscale", "sepia", "brightness"]
    for index in range(1, length + 1):
        effect = effects[index % len(effects)]
        nodes.append(
            f"    - {{id: n{index}, type: EFFECT, config: {{effect: {effect}}}, inputs: [n{index - 1}]}}"
        )
    return "name: chain\ndag:\n  nodes:\n" + "\n".join(nodes) + f"\n  output: n{length}\n"


def fan_recipe(width: int) -> str:
    nodes = ["    - {id: src, type: SOURCE, config: {input: true}}"]
    for index in range(width):
        factor = 0.5 + index / (2 * width)
        config = f"{{effect: brightness, factor: {factor}}}"
        nodes.append(f"    - {{id: t{index}, type: EFFECT, config: {config}, inputs: [src]}}")
    return "name: fan\ndag:\n  nodes:\n" + "\n".join(nodes) + f"\n  output: t{width - 1}\n"


async def _put(node: Node, data: bytes) -> ContentEntry:
    return (await node.store.put_bytes(data, max_size=10**9)).entry


async def render(node: Node, recipe_text: str, image: ContentEntry) -> tuple[float, dict[str, int]]:
    """(wall seconds, count of step events by kind) for one run of ``recipe_text``."""
    recipe = parse_recipe(recipe_text)
    recipe_entry = await _put(node, recipe_text.encode())
    source = next(node.id for node in recipe.nodes if node.type == "SOURCE")
    started = time.perf_counter()
    record = await node.run_manager.submit(
        Submission(recipe, recipe_entry, {source: image.content_id}, owner="bench")
    )
    final = await node.run_manager.wait(record["run_id"])
    elapsed = time.perf_counter() - started
    assert final["status"] == "completed", final
    events: Any = await node.redis.xrange(node.keys.events(record["run_id"]))
    counts: dict[str, int] = {}
    for _, fields in events:
        counts[fields["kind"]] = counts.get(fields["kind"], 0) + 1
    return elapsed, counts


Figures = dict[str, float]


def pixels(repeat: int) -> Any:
    """The 16x16 source image of one repeat: new bytes each time, so no step is a cache hit."""
    return np.random.default_rng(1 + repeat).integers(0, 256, (16, 16, 3), dtype=np.uint8)


def in_process_seconds(width: int, image: Any) -> float:
    effect = EFFECTS["brightness"]
    assert effect.apply is not None
    started = time.perf_counter()
    for index in range(width):
        png_bytes(effect.apply(image, {"factor": 0.5 + index / (2 * width)}))
    return time.perf_counter() - started


class DaemonCalls:
    """Counts the node's calls to Kubo by command (wrapping its client's one request method)
    and Redis's commands (``INFO commandstats``): how many of each a step costs."""

    def __init__(self, node: Node) -> None:
        self.ipfs: Counter[str] = Counter()
        self._redis = node.redis
        request = node.ipfs._request

        def counting(command: str, *args: Any, **kwargs: Any) -> Any:
            self.ipfs[command] += 1
            return request(command, *args, **kwargs)

        setattr(node.ipfs, "_request", counting)  # noqa: B010 - an instance attribute over the method

    async def redis_calls(self) -> Counter[str]:
        stats: Any = await self._redis.info("commandstats")
        return Counter({name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()})


def meter_for(daemons: dict[str, int]) -> CpuMeter:
    """CPU per process: this one (the node), its step workers, Kubo, Redis."""
    own = os.getpid()
    workers = [pid for pid, parent in parents().items() if parent == own and pid not in daemons.values()]
    return CpuMeter({"node app": [own], "workers": workers, **{k: [v] for k, v in daemons.items()}})


async def one_repeat(
    node: Node, repeat: int, sizes: tuple[int, int], daemons: dict[str, int], calls: DaemonCalls
) -> Figures:
    """Render the chain twice and the fan once from this repeat's image; the figures."""
    chain, trivial = sizes
    image_pixels = pixels(repeat)
    image = await _put(node, png_bytes(image_pixels))
    first, first_counts = await render(node, chain_recipe(chain), image)
    again, again_counts = await render(node, chain_recipe(chain), image)
    meter = meter_for(daemons)  # the workers are up now: the chain ran on them
    calls.ipfs.clear()
    redis_before = await calls.redis_calls()
    meter.start()
    fan, fan_counts = await render(node, fan_recipe(trivial), image)
    used = meter.stop()
    redis_used = await calls.redis_calls() - redis_before
    loop_s = in_process_seconds(trivial, image_pixels)
    assert fan_counts.get("step_finished", 0) == trivial, fan_counts
    figures = {
        "(a) chain first run s": first,
        "(a) chain again s": again,
        "(a) again: steps executed": float(again_counts.get("step_finished", 0)),
        "(a) again: cache hits": float(again_counts.get("step_cached", 0)),
        "(b) scheduler ms/step": 1000 * fan / trivial,
        "(b) loop ms/step (baseline)": 1000 * loop_s / trivial,
        "(b) ratio scheduler/loop": fan / loop_s,
        "(b) steps/s": trivial / fan,
    }
    figures.update({f"(b) cpu ms/step: {role}": 1000 * seconds / trivial for role, seconds in used.items()})
    figures.update({f"(b) kubo calls/step: {name}": count / trivial for name, count in calls.ipfs.items()})
    figures["(b) redis commands/step"] = redis_used.total() / trivial
    busiest = ", ".join(f"{name} {count / trivial:.1f}" for name, count in redis_used.most_common(6))
    print(f"repeat {repeat + 1}: redis commands per step, the most frequent: {busiest}")
    print(f"repeat {repeat + 1}: chain executed {first_counts.get('step_finished', 0)} the first time, "
          f"{figures['(b) scheduler ms/step']:.2f} ms/step", flush=True)  # fmt: skip
    return figures


async def run(settings: Settings, daemons: dict[str, int], chain: int, trivial: int, repeats: int) -> None:
    series: dict[str, list[float]] = {}
    async with Node.open(settings) as node:  # the executor is ready; no HTTP needed
        calls = DaemonCalls(node)
        for repeat in range(repeats):
            figures = await one_repeat(node, repeat, (chain, trivial), daemons, calls)
            for key, value in figures.items():
                series.setdefault(key, []).append(value)
    print(json.dumps({"workers": settings.workers, "chain": chain, "trivial": trivial}))
    median = print_medians(f"median of {repeats} repeats", series, 3)
    print(f"(b) {median['(b) steps/s']:.0f} trivial steps/s through the scheduler; Celery's no-op "
          "tasks/s on this machine: .venv/bin/python -m bench.celery_baseline")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chain", type=int, default=100)
    parser.add_argument("--trivial", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as scratch,
        EmbeddedServices(Settings(data_dir=Path(scratch) / "node", log_level="WARNING")) as services,
    ):
        daemons = {"kubo": services.processes["ipfs"].pid, "redis": services.processes["redis"].pid}
        pids = {role: pid for role, pid in daemons.items() if pid is not None}
        uvloop.run(run(services.settings, pids, args.chain, args.trivial, args.repeat))


if __name__ == "__main__":
    main()
