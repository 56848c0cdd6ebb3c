"""Segment-parallel plans: a long per-frame video chain planned as parts over exact frame ranges,
its sound once, and a join by stream copy; frame-exact, the same bytes whichever node renders
which part."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from node.config import Settings
from node.executor.planner import Plan, make_plan
from node.executor.recipe import parse_recipe
from node.executor.segments import ClipFacts, segmented
from node.executor.worker import compute
from tests.helpers import NodeClient, sse, start, upload
from tests.media import facts, frames, pattern_clip, quiet_then_loud, samples
from tests.test_media_api import fetch

CHAIN = """
name: dog-sepia
dag:
  nodes:
    - {id: src, type: SOURCE, config: {input: true}}
    - {id: dog, type: EFFECT, config: {effect: dog}, inputs: [src]}
    - {id: out, type: EFFECT, config: {effect: sepia}, inputs: [dog]}
  output: out
"""
CLIP_ID = "1" * 64
TOOLS = {"ffmpeg": "test", "numpy": "test"}


def _plan(recipe_text: str, frames_: int = 50, segment_s: float = 0.6) -> Any:
    plan = make_plan(parse_recipe(recipe_text), "0" * 64, {"src": CLIP_ID}, TOOLS, {CLIP_ID: "video/mp4"})
    return segmented(plan, {CLIP_ID: ClipFacts(frames_, Fraction(25), 48000)}, segment_s, TOOLS)


def test_a_long_chain_is_planned_as_parts_sound_and_a_join() -> None:
    plan = _plan(CHAIN)
    kinds = [(step.node_id, step.type) for step in plan.steps]
    assert kinds == [("src", "SOURCE"), ("out@sound", "SOUND"), ("out@0", "PART"), ("out@1", "PART"),
                     ("out@2", "PART"), ("out@3", "PART"), ("out", "JOIN")]  # fmt: skip
    ranges = [step.config["frames"] for step in plan.steps if step.type == "PART"]
    assert ranges == [[0, 15], [15, 30], [30, 45], [45, 50]]
    join = plan.steps[-1]
    assert plan.output == join.cache_id and join.fused == ("dog", "out")
    assert join.inputs == tuple(step.cache_id for step in (*plan.steps[2:6], plan.steps[1]))  # parts, sound
    assert {step.config["encode"] for step in plan.steps[1:]} == {"delivery"}


def test_short_clips_and_whole_clip_steps_are_not_segmented() -> None:
    assert [step.type for step in _plan(CHAIN, frames_=15).steps] == ["SOURCE", "CHAIN"]
    speed = CHAIN.replace("{effect: sepia}", "{speed: 2}").replace(
        "type: EFFECT, config: {speed", "type: TRANSFORM, config: {speed"
    )
    assert [step.type for step in _plan(speed).steps] == ["SOURCE", "CHAIN"]


def test_steps_after_the_chain_read_the_join() -> None:
    nodes = "    - {id: big, type: RESIZE, config: {width: 80}, inputs: [out]}\n"
    nodes += "    - {id: mix, type: AUDIO_MIX, inputs: [out, big]}\n  output: mix"
    text = CHAIN.replace("  output: out", nodes)
    plan = _plan(text)
    by_node = {step.node_id: step for step in plan.steps}
    assert by_node["out"].type == "JOIN" and by_node["out"].config["encode"] == "lossless"
    assert by_node["mix"].inputs[0] == by_node["out"].cache_id
    unsegmented = make_plan(parse_recipe(text), "0" * 64, {"src": CLIP_ID}, TOOLS, {CLIP_ID: "video/mp4"})
    assert plan.plan_id != unsegmented.plan_id


def _jobs(plan: Any, clip: Path, tmp_path: Path) -> Path:
    """Run every step of ``plan`` after its source with the worker's functions; the output."""
    outputs = {plan.steps[0].cache_id: clip}
    for step in plan.steps[1:]:
        output = tmp_path / f"{step.node_id}.out"
        job = {
            "type": step.type,
            "config": dict(step.config),
            "inputs": [str(outputs[i]) for i in step.inputs],
        }
        compute({**job, "output": str(output)})
        outputs[step.cache_id] = output
    return outputs[plan.output]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def test_lossless_parts_join_to_the_same_frames_as_the_whole(tmp_path: Path) -> None:
    """Before the delivery encode, every frame of the joined parts is byte-identical to the
    unsegmented render's, and the sound lasts exactly as long as the picture."""
    clip = pattern_clip(tmp_path / "clip.mp4", seconds=2.0)
    text = CHAIN.replace("  output: out", "    - {id: m, type: MUX, inputs: [out, src]}\n  output: m")
    whole = make_plan(parse_recipe(text), "0" * 64, {"src": CLIP_ID}, TOOLS, {CLIP_ID: "video/mp4"})
    parts = segmented(whole, {CLIP_ID: ClipFacts(50, Fraction(25), 48000)}, 0.6, TOOLS)
    chain_whole = next(step for step in whole.steps if step.type == "CHAIN")
    joined = next(step for step in parts.steps if step.type == "JOIN")
    (tmp_path / "w").mkdir()
    (tmp_path / "p").mkdir()
    whole_out = _jobs(
        Plan(whole.plan_id, whole.recipe_id, (whole.steps[0], chain_whole), chain_whole.cache_id),
        clip,
        tmp_path / "w",
    )
    parts_out = _jobs(
        Plan(parts.plan_id, parts.recipe_id, tuple(parts.steps[:-1]), joined.cache_id),
        clip,
        tmp_path / "p",
    )
    expected, got = frames(whole_out), frames(parts_out)
    assert got.shape == expected.shape == (50, 120, 160, 3)
    assert np.array_equal(got, expected)
    assert len(samples(parts_out)) == 96000


def test_delivery_parts_join_by_stream_copy_as_good_as_the_whole(tmp_path: Path) -> None:
    """After the delivery encode: the input's frame count, sound in sync, and around each join
    a picture within 1.5 dB PSNR (against the frames before encoding) of the unsegmented
    encode's. (Against the unsegmented encode itself it is about 41 dB here: x264's lookahead
    decides each encode a little differently everywhere, not only at the joins.)"""
    clip = pattern_clip(tmp_path / "clip.mp4", seconds=2.0, size="320x240")
    text = CHAIN.replace("  output: out", "    - {id: m, type: MUX, inputs: [out, src]}\n  output: m")
    reference = make_plan(parse_recipe(text), "0" * 64, {"src": CLIP_ID}, TOOLS, {CLIP_ID: "video/mp4"})
    chain = next(step for step in reference.steps if step.type == "CHAIN")
    whole = make_plan(parse_recipe(CHAIN), "0" * 64, {"src": CLIP_ID}, TOOLS, {CLIP_ID: "video/mp4"})
    parts = segmented(whole, {CLIP_ID: ClipFacts(50, Fraction(25), 48000)}, 0.6, TOOLS)
    for name in ("w", "p", "l"):
        (tmp_path / name).mkdir()
    whole_out, parts_out = _jobs(whole, clip, tmp_path / "w"), _jobs(parts, clip, tmp_path / "p")
    alone = Plan(reference.plan_id, reference.recipe_id, (reference.steps[0], chain), chain.cache_id)
    lossless = _jobs(alone, clip, tmp_path / "l")
    got = facts(parts_out)
    assert (got["codecs"], got["frames"]) == (["h264", "aac"], 50)
    assert abs(got["audio_s"] - 2.0) < 0.03
    truth, expected, joined = frames(lossless), frames(whole_out), frames(parts_out)
    for join in (15, 30, 45):
        for index in (join - 1, join):
            assert _psnr(joined[index], truth[index]) >= _psnr(expected[index], truth[index]) - 1.5, (
                join,
                index,
            )


async def test_two_nodes_render_the_parts_of_one_run_into_the_same_bytes(
    node_client: NodeClient, settings: Settings, tmp_path: Path
) -> None:
    """Two nodes with 0.4 s segments share one run's parts (claimed like any step); the output
    is byte for byte what the plan's steps make run one after another in one process, whichever
    node rendered which part, and the run's steps say who rendered each."""
    first = await node_client(settings.replace(segment_seconds=0.4))
    await node_client(settings.replace(segment_seconds=0.4, data_dir=tmp_path / "second"))
    auth = {"Authorization": f"Bearer {(settings.data_dir / 'admin_token').read_text().strip()}"}
    clip = await asyncio.to_thread(pattern_clip, tmp_path / "clip.mp4", seconds=2.0)
    ref = (await upload(first, auth, await asyncio.to_thread(clip.read_bytes)))["cid"]
    run = await start(first, auth, {"recipe": "dog", "inputs": [ref]})
    assert (await sse(first, run["run_id"]))[-1][1] == "run_completed"
    record = await (await first.get(f"/runs/{run['run_id']}")).json()
    parts = {name: step for name, step in record["steps"].items() if step["type"] == "PART"}
    assert sorted(parts) == [f"dog@{index}" for index in range(5)]
    assert record["steps"]["dog"]["type"] == "JOIN" and record["steps"]["dog@sound"]["type"] == "SOUND"
    assert all(step["state"] == "done" and step["node"] for step in parts.values())
    plan = json.loads(await (await first.get(f"/cache/{record['plan_cid']}")).read())
    output = await fetch(first, record["output"]["cid"], tmp_path / "out.mp4")
    (tmp_path / "here").mkdir()
    here = await asyncio.to_thread(_jobs, Plan.from_record(plan), clip, tmp_path / "here")
    assert await asyncio.to_thread(output.read_bytes) == await asyncio.to_thread(here.read_bytes)
    assert (await asyncio.to_thread(facts, output))["frames"] == 50


def test_a_bound_effect_is_split_with_its_slice_of_the_curve(tmp_path: Path) -> None:
    """A blur bound to the clip's energy: each part reads the analysis too, takes the curve at
    its absolute frames, and the joined lossless parts equal the unsegmented render frame for
    frame."""
    clip = quiet_then_loud(tmp_path / "clip.mkv")
    text = (
        "name: pulse\ndag:\n  nodes:\n    - {id: src, type: SOURCE, config: {input: true}}\n"
        "    - {id: music, type: ANALYZE, config: {features: [energy]}, inputs: [src]}\n"
        "    - {id: out, type: EFFECT, inputs: [src],\n"
        "       config: {effect: blur, sigma: {bind: music.energy, range: [0.5, 6], smooth: 0.2}}}\n"
        "    - {id: m, type: MUX, inputs: [out, src]}\n  output: m\n"
    )
    whole = make_plan(parse_recipe(text), "0" * 64, {"src": CLIP_ID}, TOOLS, {CLIP_ID: "video/x-matroska"})
    parts = segmented(whole, {CLIP_ID: ClipFacts(50, Fraction(25), 48000)}, 0.6, TOOLS)
    analysis = next(step for step in whole.steps if step.type == "ANALYZE")
    pieces = [step for step in parts.steps if step.type == "PART"]
    assert [step.inputs for step in pieces] == [(CLIP_ID, analysis.cache_id)] * 4
    assert len({step.cache_id for step in pieces}) == 4
    bound = next(step for step in whole.steps if step.node_id == "out")
    joined = next(step for step in parts.steps if step.type == "JOIN")
    for name in ("w", "p"):
        (tmp_path / name).mkdir()
    whole_out = _jobs(Plan("w", "r", (whole.steps[0], analysis, bound), bound.cache_id), clip, tmp_path / "w")
    steps = tuple(step for step in parts.steps if step.type != "MUX")
    parts_out = _jobs(Plan("p", "r", steps, joined.cache_id), clip, tmp_path / "p")
    expected, got = frames(whole_out), frames(parts_out)
    assert got.shape == expected.shape and np.array_equal(got, expected)


def _group(pgid: int) -> list[str]:
    """The commands of the live processes in process group ``pgid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name, rest = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()
        if int(rest[2]) == pgid and rest[0] != "Z":
            found.append(name)
    return found


def test_a_worker_told_to_end_takes_what_it_started_with_it() -> None:
    """SIGTERM (the parent-death signal a worker gets when its node is killed) ends the worker's
    whole process group: an ffmpeg that writes only to its file (no pipe back to notice the
    worker gone; here a plain ``sleep``) would otherwise render on for nobody."""
    code = (
        "import subprocess, time\n"
        "from node.executor.worker import die_with_group\n"
        "die_with_group()\n"
        "subprocess.Popen(['sleep', '60'])\n"
        "time.sleep(60)\n"
    )
    worker = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while "sleep" not in _group(worker.pid):
            assert time.monotonic() < deadline, "the child never started"
            time.sleep(0.05)
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _group(worker.pid):
            assert time.monotonic() < deadline, f"still running: {_group(worker.pid)}"
            time.sleep(0.05)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
