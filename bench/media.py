"""A 720p clip through ``dog`` then ``sepia``: through the node, and as one raw ffmpeg command.

The clip (testsrc2 + a sine tone, H.264 + AAC, 720p at 25 fps, 60 s by default) is stored in the
node first (not timed, as an upload would be). Each round then times, one after the other:

- node: submit a recipe ``dog -> sepia`` and wait for the run to complete: fetching the input
  from IPFS, probing, the one fused ffmpeg pass (dog and sepia, delivery encode), adding and
  pinning the output, indexes, signed receipt and provenance;
- raw: the equivalent ffmpeg command run directly on the clip's file: the same filter graph and
  encoder settings (printed), nothing else.

Each round uses a slightly different ``gain`` (the same in both), so the node never answers
from its step cache. Prints wall times, their medians and the ratio node / raw (target <= 1.1).

    .venv/bin/python -m bench.media [--seconds 60] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import tempfile
import time
from pathlib import Path

import uvloop

from bench.report import print_medians
from node.assembly import Node
from node.config import Settings
from node.executor.recipe import parse_recipe
from node.executor.run_manager import Submission
from node.media import ops
from node.media.ffmpeg import Encoding
from node.media.graph import Graph
from node.media.probe import count_frames, probe_file
from node.pixels.effects import EFFECTS
from node.pixels.params import normalize_params
from node.services import EmbeddedServices
from node.sync.index import ContentEntry

RECIPE = """
name: dog-sepia
dag:
  nodes:
    - {{id: src, type: SOURCE, config: {{input: true}}}}
    - {{id: dog, type: EFFECT, config: {{effect: dog, gain: {gain}}}, inputs: [src]}}
    - {{id: out, type: EFFECT, config: {{effect: sepia}}, inputs: [dog]}}
  output: out
"""


def make_clip(path: Path, seconds: int) -> Path:
    lavfi = [
        *("-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate=25:duration={seconds}"),
        *("-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"),
    ]
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *lavfi, "-c:v", "libx264", "-preset", "veryfast",
         "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path)],
        check=True,
    )  # fmt: skip
    return path


def raw_command(clip: Path, gain: float, output: Path) -> list[str]:
    """The ffmpeg command equivalent to the node's step: dog then sepia, delivery encode."""
    info = probe_file(clip)
    graph = Graph()
    av = graph.add_input(clip, info, video_frames=count_frames(clip, info))
    for name, given in (("dog", {"gain": gain}), ("sepia", {})):
        params, _ = normalize_params(EFFECTS[name].params, given)
        av = ops.effect(graph, av, {"effect": name, "params": params})
    encoding = Encoding(delivery=True, has_video=True, has_audio=True)
    return ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *graph.command(av, encoding), str(output)]


async def node_seconds(node: Node, clip: ContentEntry, gain: float) -> float:
    text = RECIPE.format(gain=gain)
    recipe_entry = (await node.store.put_bytes(text.encode(), max_size=10**6)).entry
    started = time.perf_counter()
    record = await node.run_manager.submit(
        Submission(parse_recipe(text), recipe_entry, {"src": clip.content_id}, owner="bench",
                   media_types={clip.content_id: clip.media_type})
    )  # fmt: skip
    final = await node.run_manager.wait(record["run_id"])
    assert final["status"] == "completed", final
    return time.perf_counter() - started


async def run(settings: Settings, clip_path: Path, rounds: int) -> None:
    figures: dict[str, list[float]] = {"node s": [], "raw ffmpeg s": []}
    async with Node.open(settings) as node:
        started = time.perf_counter()
        clip = (await node.store.put_file(clip_path)).entry
        print(f"clip stored in {time.perf_counter() - started:.1f} s ({clip.size / 2**20:.1f} MiB)")
        for index in range(rounds):
            gain = 10.0 + index / 1000
            figures["node s"].append(await node_seconds(node, clip, gain))
            command = raw_command(clip_path, gain, clip_path.with_name(f"raw{index}.mp4"))
            if index == 0:
                print("raw command:", " ".join(command))
            started = time.perf_counter()
            await asyncio.to_thread(subprocess.run, command, check=True)
            figures["raw ffmpeg s"].append(time.perf_counter() - started)
    medians = print_medians(f"dog -> sepia on {clip_path.name}, {rounds} rounds", figures)
    print(f"ratio node / raw: {medians['node s'] / medians['raw ffmpeg s']:.3f} (target <= 1.1)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as scratch,
        EmbeddedServices(Settings(data_dir=Path(scratch) / "node", log_level="WARNING")) as services,
    ):
        clip = make_clip(Path(scratch) / f"clip-{args.seconds}s-720p.mp4", args.seconds)
        uvloop.run(run(services.settings, clip, args.rounds))


if __name__ == "__main__":
    main()
