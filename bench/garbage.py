"""The disk budget's garbage collection beside Kubo's own unpin and ``repo/gc``, in the same run.

Made first (not timed): a clip (testsrc2 with a sine tone, 640x360 at 25 fps, H.264 + AAC, 10 s
by default), stored in a node on embedded daemons of its own (a fresh Redis and Kubo repository
in a temporary folder) with ``ARTDAG_DISK_BUDGET=1`` and no periodic look; then ``--runs`` renders
(4 by default) of a recipe whose every run leaves three lossless (FFV1) intermediates: a ``dog``
whose output two effects read (so it is not fused into a chain), ``sepia`` and ``invert`` of it,
joined by a SEQUENCE (the output). Each run's ``dog`` has another sigma, so each run's
intermediates are new.

Timed:

- node: one ``GarbageCollector.collect()``: reading the unfinished runs and the step index,
  choosing the least recently used intermediates, the Lua eviction of each, unindexing and
  unpinning it under its content lock, Kubo's ``repo/gc``, and measuring the repository and the
  local cache before and after (a walk of the cache, ``repo/stat``);
- baseline: the same number of files of the same sizes (random bytes), added pinned to the same
  daemon, then unpinned one by one and ``repo/gc``: what Kubo itself takes to let go of as much.

Prints the bytes held before and after, the bytes reclaimed, what was evicted, the times and the
ratio node / baseline.

    .venv/bin/python -m bench.garbage [--runs 4] [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

import uvloop

from node.assembly import Node
from node.config import Settings
from node.executor.recipe import parse_recipe
from node.executor.run_manager import Submission
from node.services import EmbeddedServices
from node.sync.index import ContentEntry

RECIPE = """
name: gc-bench-{index}
dag:
  nodes:
    - {{id: clip, type: SOURCE, config: {{input: true}}}}
    - {{id: edges, type: EFFECT, config: {{effect: dog, params: {{sigma: {sigma}}}}}, inputs: [clip]}}
    - {{id: warm, type: EFFECT, config: {{effect: sepia}}, inputs: [edges]}}
    - {{id: cold, type: EFFECT, config: {{effect: invert}}, inputs: [edges]}}
    - {{id: both, type: SEQUENCE, inputs: [warm, cold]}}
  output: both
"""


def make_clip(path: Path, seconds: int) -> Path:
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=s=640x360:r=25:d={seconds}",
         "-f", "lavfi", "-i", f"sine=f=440:d={seconds}", "-c:v", "libx264", "-preset", "veryfast",
         "-c:a", "aac", "-shortest", str(path)],
        check=True,
    )  # fmt: skip
    return path


async def render(node: Node, clip: ContentEntry, index: int) -> None:
    text = RECIPE.format(index=index, sigma=1.0 + index / 100)
    recipe_entry = (await node.store.put_bytes(text.encode(), max_size=10**6)).entry
    record = await node.run_manager.submit(
        Submission(parse_recipe(text), recipe_entry, {"clip": clip.content_id}, owner="bench",
                   media_types={clip.content_id: clip.media_type})
    )  # fmt: skip
    final = await node.run_manager.wait(record["run_id"])
    assert final["status"] == "completed", final


async def baseline(node: Node, sizes: list[int]) -> float:
    """Add as many pinned files of these sizes, then time unpinning them and ``repo/gc``."""
    cids = []
    for size in sizes:
        added = await node.ipfs.add_many([os.urandom(size)], pin=True)
        cids.append(added[0].cid)
    started = time.perf_counter()
    for cid in cids:
        await node.ipfs.pin_rm(cid)
    await node.ipfs.collect_garbage()
    return time.perf_counter() - started


async def run(settings: Settings, clip_path: Path, runs: int) -> None:
    async with Node.open(settings) as node:
        clip = (await node.store.put_file(clip_path, owner="bench")).entry
        started = time.perf_counter()
        for index in range(runs):
            await render(node, clip, index)
        print(f"{runs} renders in {time.perf_counter() - started:.1f} s (not timed)")
        before = await node.garbage.usage()
        started = time.perf_counter()
        collection = await node.garbage.collect(reason="requested", who="bench")
        node_s = time.perf_counter() - started
        report = collection.report()
        sizes = [int(item["size"]) for item in collection.evicted]
        baseline_s = await baseline(node, sizes)
    mib = 2**20
    held = f"repository {before.repo / mib:.1f}, cache {before.cache / mib:.1f}"
    print(f"held before: {before.total / mib:.1f} MiB ({held})")
    print(f"held after:  {report['after']['total'] / mib:.1f} MiB")
    evicted = f"{report['evicted_steps']} steps evicted ({sum(sizes) / mib:.1f} MiB of intermediates)"
    files = f"{report['cache_files_removed']} cache files"
    print(f"reclaimed:   {report['reclaimed'] / mib:.1f} MiB; {evicted}, {files}")
    print(f"node collect():              {node_s:.3f} s")
    print(f"baseline unpin + repo/gc:    {baseline_s:.3f} s ({len(sizes)} files, {sum(sizes) / mib:.1f} MiB)")
    print(f"node / baseline:             {node_s / baseline_s:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="artdag-gc-bench-") as folder:
        root = Path(folder)
        settings = Settings(data_dir=root / "node", disk_budget=1, gc_interval=3600, segment_seconds=0)
        with EmbeddedServices(settings) as services:
            clip = make_clip(root / "clip.mp4", args.seconds)
            uvloop.run(run(services.settings, clip, args.runs))


if __name__ == "__main__":
    main()
