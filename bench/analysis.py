"""ANALYZE through the node beside the libraries it wraps, called directly, in the same run.

Made first in a temporary folder (not timed): a song (a 120 BPM click with a bar-long thump and a
220 Hz tone, 44.1 kHz stereo FLAC, 180 s by default) and a clip (testsrc2, in negative every other
10 s so that it has a cut every 10 s, and a sine tone; 720p at 25 fps, H.264 ultrafast + AAC,
600 s by default). Both are stored in the node (not timed, as an upload would be). Then:

- warm-up (not in the figures): a 5 s song analysed through the node and directly, so the node's
  step worker and this process have both loaded librosa and compiled its numba code; the times
  are printed, as what a cold worker pays once;
- song, each round: node: submit a recipe ``SOURCE -> ANALYZE`` (beats, tempo, onsets, energy,
  bands, loudness) and wait for the run to complete (fetching the input from IPFS, probing,
  decoding, the analysis, adding and pinning the record, indexes, receipt, provenance);
  ``analyze()``: the node's own analysis function called in this process on the file; direct:
  ``librosa.load`` (22050 Hz mono), ``onset_strength``, ``beat_track`` and ``onset_detect`` (hop
  256) and ``feature.rms`` (one value per 1/30 s). The node also computes bands (an FFT per frame)
  and loudness (an ffmpeg ebur128 pass), which the direct figure leaves out;
- clip, each round: the same three for scenes and energy; direct: ffmpeg's ``scdet`` (threshold
  10, the command printed) then ``librosa.load`` + ``feature.rms`` on its sound (one per frame);
- cache hit: the first song recipe submitted again, answered from the step index.

Each node round uses a slightly different ``fps`` (30, 30.001, ...: it changes the step's cache
id; a clip's own frame rate stays its timeline), so every timed node round is a miss (checked).
Prints wall times (the node's step as its worker ran it too), medians, the ratios node / direct
and hit / first miss, and what node and direct found (tempo, beats, onsets, scenes, energy
values) as a check that they did the same work.

    .venv/bin/python -m bench.analysis [--video-seconds 600] [--song-seconds 180] [--rounds 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import uvloop

from bench.report import print_medians
from node.assembly import Node
from node.config import Settings
from node.executor.recipe import parse_recipe
from node.executor.run_manager import Submission
from node.media.analysis import analyze
from node.services import EmbeddedServices
from node.sync.index import ContentEntry

SONG_FEATURES = ("beats", "tempo", "onsets", "energy", "bands", "loudness")
CLIP_FEATURES = ("scenes", "energy")
SAMPLE_RATE = 22050
HOP = 256
WARM_UP_SECONDS = 5
MAX_RECORD_BYTES = 64 * 2**20
RECIPE = """
name: analysis-bench
dag:
  nodes:
    - {{id: src, type: SOURCE, config: {{input: true}}}}
    - {{id: out, type: ANALYZE, config: {{features: [{features}], fps: {fps}}}, inputs: [src]}}
  output: out
"""
# A click on every beat (120 BPM), a low thump on every bar (2 s), and a steady 220 Hz tone.
SONG_SOUND = (
    "0.4*sin(2*PI*1500*t)*exp(-60*mod(t\\,0.5))+0.4*sin(2*PI*60*t)*exp(-12*mod(t\\,2))+0.12*sin(2*PI*220*t)"
)

CUTS = "negate=enable=gte(mod(t\\,20)\\,10)"  # the picture in negative every other 10 s: a cut each 10 s


@dataclass(frozen=True)
class Timed:
    """One analysis: its wall time, and what it found (counts, tempo) to set beside the other's."""

    seconds: float
    found: dict[str, float]
    step_s: float = 0.0  # the node's step as it ran in its worker (0: direct)
    state: str = ""  # the node's step: done (computed) or cached


def make_song(path: Path, seconds: int) -> Path:
    """A 44.1 kHz stereo FLAC of ``seconds`` of SONG_SOUND."""
    source = f"aevalsrc=exprs={SONG_SOUND}:c=stereo:s=44100:d={seconds}"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", source,
         "-c:a", "flac", "-sample_fmt", "s16", str(path)],
        check=True,
    )  # fmt: skip
    return path


def make_clip(path: Path, seconds: int) -> Path:
    """A 720p 25 fps H.264 (ultrafast) + AAC clip of testsrc2 and a sine tone."""
    lavfi = [
        *("-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate=25:duration={seconds}"),
        *("-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"),
    ]
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *lavfi, "-vf", CUTS, "-c:v", "libx264",
         "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path)],
        check=True,
    )  # fmt: skip
    return path


def scdet_command(clip: Path) -> list[str]:
    """ffmpeg's scene detection as the node runs it (threshold 10), printing each cut's scores."""
    graph = "scdet=threshold=10:sc_pass=1,metadata=mode=print:file=-"
    return ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(clip), "-map", "0:v:0", "-vf", graph,
            "-f", "null", "-"]  # fmt: skip


def load_sound(path: Path) -> np.ndarray:
    """``librosa.load`` at 22050 Hz mono (a clip's AAC goes through audioread and ffmpeg, with
    librosa's warnings that it falls back to them silenced)."""
    import librosa  # noqa: PLC0415 - heavy (numba): imported, and timed, in the warm-up

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        samples, _ = librosa.load(path, sr=SAMPLE_RATE, mono=True)
    return samples


def rms_values(samples: np.ndarray, fps: float) -> int:
    """librosa's RMS, one value per frame of ``fps``: how many values."""
    import librosa  # noqa: PLC0415

    hop = round(SAMPLE_RATE / fps)
    return int(librosa.feature.rms(y=samples, frame_length=hop, hop_length=hop, center=False).shape[-1])


def direct_song(path: Path) -> dict[str, float]:
    """Beats, tempo, onsets and RMS energy of ``path`` by librosa in this process."""
    import librosa  # noqa: PLC0415

    samples = load_sound(path)
    envelope = librosa.onset.onset_strength(y=samples, sr=SAMPLE_RATE, hop_length=HOP)
    tempo, beats = librosa.beat.beat_track(onset_envelope=envelope, sr=SAMPLE_RATE, hop_length=HOP)
    onsets = librosa.onset.onset_detect(onset_envelope=envelope, sr=SAMPLE_RATE, hop_length=HOP)
    return {
        "tempo bpm": float(np.atleast_1d(tempo)[0]),
        "beats": len(beats),
        "onsets": len(onsets),
        "energy values": rms_values(samples, 30.0),
    }


def direct_clip(path: Path) -> dict[str, float]:
    """Scene cuts of ``path`` by ffmpeg's scdet, and librosa's RMS of its sound (25 fps)."""
    done = subprocess.run(scdet_command(path), capture_output=True, check=True)
    return {
        "scenes": done.stdout.count(b"lavfi.scd.score="),
        "energy values": rms_values(load_sound(path), 25.0),
    }


def found_by_node(record: dict[str, Any]) -> dict[str, float]:
    """What a node's analysis record found, in the terms of the direct figures."""
    found: dict[str, float] = {}
    if "tempo" in record:
        found["tempo bpm"] = float(record["tempo"]["bpm"])
    for series in ("beats", "onsets", "scenes"):
        if series in record:
            found[series] = len(record[series]["times"])
    if "energy" in record:
        found["energy values"] = len(record["energy"]["values"])
    return found


async def node_analysis(node: Node, source: ContentEntry, features: tuple[str, ...], fps: float) -> Timed:
    """Submit ``SOURCE -> ANALYZE`` over ``source`` and wait for the run to complete."""
    text = RECIPE.format(features=", ".join(features), fps=fps)
    recipe_entry = (await node.store.put_bytes(text.encode(), max_size=10**6)).entry
    started = time.perf_counter()
    record = await node.run_manager.submit(
        Submission(parse_recipe(text), recipe_entry, {"src": source.content_id}, owner="bench",
                   media_types={source.content_id: source.media_type})
    )  # fmt: skip
    final = await node.run_manager.wait(record["run_id"])
    seconds = time.perf_counter() - started
    assert final["status"] == "completed", final
    assert final["output"] is not None, final
    step = (await node.run_manager.detail(record["run_id"], node.identity.node_id))["steps"]["out"]
    output = await node.store.resolve(final["output"]["cid"])
    analysis = json.loads(await node.store.read_all(output, MAX_RECORD_BYTES))
    return Timed(seconds, found_by_node(analysis), float(step.get("running_s") or 0.0), step["state"])


def in_process(path: Path, features: tuple[str, ...], fps: float) -> dict[str, float]:
    """The node's own ``analyze`` called in this process: the analysis without the node around it."""
    output = path.with_name(f"{path.stem}.analysis.json")
    analyze(path, {"features": list(features), "fps": fps, "scene_threshold": 10.0}, output)
    return found_by_node(json.loads(output.read_bytes()))


async def timed(work: Callable[..., dict[str, float]], *args: Any) -> Timed:
    """``work(*args)`` in a thread (the node's loop stays free), timed."""
    started = time.perf_counter()
    found = await asyncio.to_thread(work, *args)
    return Timed(time.perf_counter() - started, found)


async def warm_up(node: Node, song: Path) -> None:
    """Import librosa and run its numba code once, in the node's step worker and here."""
    entry = (await node.store.put_file(song)).entry
    node_first = await node_analysis(node, entry, SONG_FEATURES, 29.0)
    direct_first = await timed(direct_song, song)
    analyze_first = await timed(in_process, song, SONG_FEATURES, 29.0)
    print(f"warm-up on a {WARM_UP_SECONDS} s song (not in the figures): node {node_first.seconds:.2f} s "
          f"(step {node_first.step_s:.2f} s), direct {direct_first.seconds:.2f} s, "
          f"then analyze() {analyze_first.seconds:.2f} s")  # fmt: skip


@dataclass
class Item:
    """One measured item's rounds: through the node, ``analyze`` in this process, direct calls."""

    title: str
    node: list[Timed] = field(default_factory=list)
    analyze: list[Timed] = field(default_factory=list)
    direct: list[Timed] = field(default_factory=list)

    def report(self) -> float:
        """Print the medians, the ratios and what each found; the node's median."""
        figures = {
            "node s": [timed.seconds for timed in self.node],
            "node step s": [timed.step_s for timed in self.node],
            "analyze() s": [timed.seconds for timed in self.analyze],
            "direct s": [timed.seconds for timed in self.direct],
        }
        medians = print_medians(f"{self.title}; {len(self.node)} rounds", figures)
        node, step, alone, direct = (medians[key] for key in figures)
        print(f"  ratio node / direct: {node / direct:.3f}")
        print(f"    node / analyze(): {node / alone:.3f}, node step / analyze(): {step / alone:.3f}, "
              f"analyze() / direct: {alone / direct:.3f}")  # fmt: skip
        for key in sorted(set(self.node[-1].found) | set(self.direct[-1].found)):
            mine, theirs = (timed[-1].found.get(key, float("nan")) for timed in (self.node, self.direct))
            print(f"  found {key:<14} node {mine:10.6g}   direct {theirs:10.6g}")
        return node


async def measure(
    node: Node, path: Path, features: tuple[str, ...], direct_work: Callable[[Path], dict[str, float]],
    rounds: int,
) -> tuple[ContentEntry, Item]:  # fmt: skip
    """Store ``path`` (not timed), then ``rounds`` of: node (each a miss), analyze(), direct."""
    started = time.perf_counter()
    entry = (await node.store.put_file(path)).entry
    print(f"{path.name} stored in {time.perf_counter() - started:.1f} s ({entry.size / 2**20:.1f} MiB)")
    item = Item(f"{path.name}: {', '.join(features)}")
    for index in range(rounds):
        fps = 30.0 + index / 1000
        item.node.append(await node_analysis(node, entry, features, fps))
        assert item.node[-1].state == "done", f"round {index} was not computed: {item.node[-1].state}"
        item.analyze.append(await timed(in_process, path, features, fps))
        item.direct.append(await timed(direct_work, path))
    return entry, item


async def run(settings: Settings, warm: Path, song: Path, clip: Path, rounds: int) -> None:
    async with Node.open(settings) as node:
        await warm_up(node, warm)
        song_entry, song_item = await measure(node, song, SONG_FEATURES, direct_song, rounds)
        hit = await node_analysis(node, song_entry, SONG_FEATURES, 30.0)
        assert hit.state == "cached", f"the repeated song analysis was not a cache hit: {hit.state}"
        _, clip_item = await measure(node, clip, CLIP_FEATURES, direct_clip, rounds)
    print()
    print("direct scene detection:", " ".join(scdet_command(clip)))
    first = song_item.report()
    clip_item.report()
    print(f"cache hit (the first song recipe again, step {hit.state}): {hit.seconds:.3f} s")
    print(f"  ratio hit / first miss: {hit.seconds / song_item.node[0].seconds:.4f}   "
          f"(median miss {first:.2f} s)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--song-seconds", type=int, default=180)
    parser.add_argument("--video-seconds", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        # A long clip's analysis may take longer than the default step timeout on a small machine.
        settings = Settings(data_dir=root / "node", log_level="WARNING", step_timeout=3600.0)
        with EmbeddedServices(settings) as services:
            started = time.perf_counter()
            warm = make_song(root / f"warm-{WARM_UP_SECONDS}s.flac", WARM_UP_SECONDS)
            song = make_song(root / f"song-{args.song_seconds}s.flac", args.song_seconds)
            clip = make_clip(root / f"clip-{args.video_seconds}s-720p.mp4", args.video_seconds)
            print(f"inputs made in {time.perf_counter() - started:.1f} s (not timed)")
            uvloop.run(run(services.settings, warm, song, clip, args.rounds))


if __name__ == "__main__":
    main()
