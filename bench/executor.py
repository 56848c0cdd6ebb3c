"""The executor's overheads: re-running a computed recipe, and scheduling trivial steps.

(a) A 100-step chain is rendered, then submitted again: the second run's wall time and how many
    steps it executed (must be 0: every step is a cache hit).
(b) 500 independent trivial steps (``invert`` with one SOURCE): wall time per step through the
    scheduler (worker IPC, IPFS add and pin, indexes, signed receipts) next to calling the same
    effect on the same pixels in a loop in this process, as a ratio.

Uses the node's own wiring (``create_app`` started with ``AppRunner``) on embedded daemons.

    .venv/bin/python -m bench.executor [--chain 100] [--trivial 500]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import uvloop
from aiohttp import web

from node.config import Settings
from node.executor.effects import EFFECTS
from node.executor.imaging import png_bytes
from node.executor.recipe import parse_recipe
from node.executor.runs import Submission
from node.http import create_app
from node.http.appkeys import CONTENT_STORE, KEYS, REDIS, RUNS
from node.services import EmbeddedServices
from node.sync.index import ContentEntry

PIXELS = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)


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


async def _put(app: web.Application, data: bytes) -> ContentEntry:
    return (await app[CONTENT_STORE].put_bytes(data, max_size=10**9)).entry


async def render(app: web.Application, recipe_text: str, image: ContentEntry) -> tuple[float, dict[str, int]]:
    """(wall seconds, count of step events by kind) for one run of ``recipe_text``."""
    recipe = parse_recipe(recipe_text)
    recipe_entry = await _put(app, recipe_text.encode())
    source = next(node.id for node in recipe.nodes if node.type == "SOURCE")
    started = time.perf_counter()
    record = await app[RUNS].submit(
        Submission(recipe, recipe_entry, {source: image.content_id}, owner="bench")
    )
    final = await app[RUNS].wait(record["run_id"])
    elapsed = time.perf_counter() - started
    assert final["status"] == "completed", final
    events: Any = await app[REDIS].xrange(app[KEYS].events(record["run_id"]))
    counts: dict[str, int] = {}
    for _, fields in events:
        counts[fields["kind"]] = counts.get(fields["kind"], 0) + 1
    return elapsed, counts


def in_process_seconds(width: int) -> float:
    effect = EFFECTS["brightness"]
    assert effect.apply is not None
    started = time.perf_counter()
    for index in range(width):
        png_bytes(effect.apply(PIXELS, {"factor": 0.5 + index / (2 * width)}))
    return time.perf_counter() - started


async def run(settings: Settings, chain: int, trivial: int) -> None:
    runner = web.AppRunner(create_app(settings))
    await runner.setup()  # runs the cleanup contexts: the executor is ready, no socket needed
    app = runner.app
    try:
        image = await _put(app, png_bytes(PIXELS))
        first, first_counts = await render(app, chain_recipe(chain), image)
        again, again_counts = await render(app, chain_recipe(chain), image)
        fan, fan_counts = await render(app, fan_recipe(trivial), image)
    finally:
        await runner.cleanup()
    loop_s = in_process_seconds(trivial)
    print(json.dumps({"workers": settings.workers}))
    print(
        f"(a) {chain}-step chain: first run {first:.2f} s ({first_counts.get('step_finished', 0)} executed)"
    )
    print(f"    again: {again:.3f} s, steps executed {again_counts.get('step_finished', 0)}, "
          f"cache hits {again_counts.get('step_cached', 0)}")  # fmt: skip
    per_step_ms = 1000 * fan / trivial
    loop_ms = 1000 * loop_s / trivial
    print(f"(b) {trivial} trivial steps: {per_step_ms:.1f} ms/step through the scheduler "
          f"({fan_counts.get('step_finished', 0)} executed), {loop_ms:.3f} ms/step in a loop, "
          f"ratio {per_step_ms / loop_ms:.0f}x")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chain", type=int, default=100)
    parser.add_argument("--trivial", type=int, default=500)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as scratch,
        EmbeddedServices(Settings(data_dir=Path(scratch) / "node", log_level="WARNING")) as services,
    ):
        uvloop.run(run(services.settings, args.chain, args.trivial))


if __name__ == "__main__":
    main()
