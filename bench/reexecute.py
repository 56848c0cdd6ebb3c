"""Re-execution of a provenance record beside the original render it repeats, in the same run.

Made first (not timed): a node on embedded daemons of its own (a fresh Redis and Kubo
repository in a temporary folder), a 640x480 random image and a clip (testsrc2 with a sine
tone, 640x360 at 25 fps, H.264 + AAC, 20 s by default).

Timed, for each of two recipes:

- baseline: the original render (``RunManager.submit`` to completion: planning, claims, the
  worker computing each step, storing outputs, receipts and the provenance record);
- node: its re-execution on the same node (reading the provenance record, plan and receipts,
  every step computed again from its recorded inputs on the same workers, each output hashed
  with ``ipfs add --only-hash``, the re-execution record signed and stored).

The recipes: ``image``, a chain of 10 image effects (10 steps); ``video``, three ffmpeg-filter
effects over the clip (fused into one chain, cut into segments by ``ARTDAG_SEGMENT_SECONDS``,
10 s: two pieces and their join). Prints each time, the verdicts and the ratio node / baseline.

    .venv/bin/python -m bench.reexecute [--seconds 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import uvloop

from bench.garbage import make_clip
from node.assembly import Node
from node.config import Settings
from node.executor.recipe import parse_recipe
from node.executor.reexecution import load_original, summary
from node.executor.reexecution_jobs import ReexecutionJob
from node.executor.run_manager import Submission
from node.pixels.imaging import png_bytes
from node.services import EmbeddedServices
from node.sync.index import ContentEntry

IMAGE_EFFECTS = ("invert", "sepia", "{effect: blur, sigma: 2}", "grayscale", "{effect: dog}", "invert",
                 "{effect: sharpen}", "sepia", "{effect: blur, sigma: 1}", "{effect: pixelate}")  # fmt: skip
VIDEO_RECIPE = """
name: reexecute-bench-video
dag:
  nodes:
    - {id: src, type: SOURCE, config: {input: true}}
    - {id: grey, type: EFFECT, config: {effect: grayscale}, inputs: [src]}
    - {id: soft, type: EFFECT, config: {effect: blur, sigma: 2}, inputs: [grey]}
    - {id: out, type: EFFECT, config: {effect: invert}, inputs: [soft]}
  output: out
"""


def image_recipe() -> str:
    nodes = ["    - {id: s0, type: SOURCE, config: {input: true}}"]
    for index, effect in enumerate(IMAGE_EFFECTS, start=1):
        config = effect if effect.startswith("{") else f"{{effect: {effect}}}"
        nodes.append(f"    - {{id: s{index}, type: EFFECT, config: {config}, inputs: [s{index - 1}]}}")
    return (
        "name: reexecute-bench-image\ndag:\n  nodes:\n"
        + "\n".join(nodes)
        + f"\n  output: s{len(IMAGE_EFFECTS)}\n"
    )


async def render(node: Node, text: str, source: ContentEntry) -> str:
    """Render ``text`` on ``source`` to completion; its provenance CID."""
    recipe_entry = (await node.store.put_bytes(text.encode(), max_size=10**6)).entry
    record = await node.run_manager.submit(
        Submission(parse_recipe(text), recipe_entry, {"src" if "src" in text else "s0": source.content_id},
                   owner="bench", media_types={source.content_id: source.media_type})
    )  # fmt: skip
    final = await node.run_manager.wait(record["run_id"])
    assert final["status"] == "completed", final
    return str(final["provenance_cid"])


async def reexecute(node: Node, cid: str) -> ReexecutionJob:
    """What ``POST /provenance/{cid}/reexecute`` starts: the job, once it has ended."""
    job = node.reexecutions.start(await load_original(node.ipfs, cid))
    return await node.reexecutions.wait(job.job_id)


async def measure(node: Node, name: str, text: str, source: ContentEntry) -> None:
    started = time.perf_counter()
    cid = await render(node, text, source)
    baseline_s = time.perf_counter() - started
    started = time.perf_counter()
    job = await reexecute(node, cid)
    node_s = time.perf_counter() - started
    assert job.state == "done", job.error
    counts = ", ".join(f"{count} {verdict}" for verdict, count in summary(job.verdicts).items())
    print(f"{name}: {len(job.verdicts)} steps re-executed: {counts} (record {job.record_cid})")
    print(f"  baseline original render:  {baseline_s:.3f} s")
    print(f"  node re-execution:         {node_s:.3f} s")
    print(f"  node / baseline:           {node_s / baseline_s:.2f}")


async def run(settings: Settings, clip_path: Path, image: bytes) -> None:
    async with Node.open(settings) as node:
        picture = (await node.store.put_bytes(image, max_size=10**8, owner="bench")).entry
        clip = (await node.store.put_file(clip_path, owner="bench")).entry
        await measure(node, "image (10 steps, 640x480)", image_recipe(), picture)
        await measure(node, f"video ({clip_path.stem})", VIDEO_RECIPE, clip)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=20)
    args = parser.parse_args()
    image = png_bytes(np.random.default_rng(27).integers(0, 256, (480, 640, 3), np.uint8))
    with tempfile.TemporaryDirectory(prefix="artdag-reexecute-bench-") as folder:
        root = Path(folder)
        settings = Settings(data_dir=root / "node", gc_interval=3600)
        with EmbeddedServices(settings) as services:
            clip = make_clip(root / f"clip-{args.seconds}s.mp4", args.seconds)
            uvloop.run(run(services.settings, clip, image))


if __name__ == "__main__":
    main()
