"""The analysis phase: ANALYZE records (beats, tempo, onsets, energy, bands, loudness, scenes),
parameters bound to them, SEGMENT cut at their events, and the examples in docs/examples run
through the node."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from node.executor.errors import RecipeError
from node.executor.planner import make_plan
from node.executor.recipe import parse_recipe
from node.media.analysis import analyze
from node.media.errors import MediaError
from node.media.render import render
from tests.helpers import Client, sse, start, upload
from tests.media import (
    BLUE,
    GREEN,
    RED,
    click_track,
    colour_steps,
    frames,
    make,
    mean_colour,
    near,
    quiet_then_loud,
    solid,
)
from tests.test_media_api import completed, fetch
from tests.test_ui_pages import page_text

EXAMPLES = Path(__file__).parent.parent / "docs" / "examples"
ALL = {
    "features": ["beats", "tempo", "onsets", "energy", "bands", "loudness"],
    "fps": 0.0,
    "scene_threshold": 10.0,
}


def _analysis(path: Path, tmp_path: Path, **config: Any) -> dict[str, Any]:
    output = tmp_path / "analysis.json"
    analyze(path, {**ALL, **config}, output)
    return dict(json.loads(output.read_bytes()))


def test_click_track_gives_its_tempo_and_beats(tmp_path: Path) -> None:
    """120 BPM clicks: the tempo within 1 BPM, every beat found within one frame at 30 fps."""
    record = _analysis(click_track(tmp_path / "clicks.wav", bpm=120.0, seconds=12.0), tmp_path)
    assert record["kind"] == "artdag/analysis"
    assert record["fps"] == 30.0 and record["frames"] == 360
    assert abs(record["tempo"]["bpm"] - 120.0) < 1.0
    clicks = [0.25 + 0.5 * k for k in range(24)]
    beats = record["beats"]["times"]
    assert len(beats) >= 18
    for time, frame in zip(beats, record["beats"]["frames"], strict=True):
        assert min(abs(time - click) for click in clicks) < 1 / 30, time
        assert frame == round(time * 30)
    assert len(record["energy"]["values"]) == 360
    assert set(record["bands"]) == {"low", "mid", "high"}
    assert len(record["loudness"]["values"]) == 360
    assert len(record["onsets"]["times"]) >= 20


def test_hard_cuts_are_found_at_their_frames(tmp_path: Path) -> None:
    """Three colours of one second each at 25 fps: scene cuts at frames 25 and 50."""
    clip = colour_steps(tmp_path / "cuts.mkv", [RED, GREEN, BLUE])
    record = _analysis(clip, tmp_path, features=["scenes"])
    assert record["fps"] == 25.0 and record["frames"] == 75
    assert record["scenes"]["frames"] == [25, 50]
    assert record["scenes"]["times"] == [1.0, 2.0]


def test_two_fresh_workers_write_the_same_bytes(tmp_path: Path) -> None:
    """The record's bytes do not depend on the worker process that made them."""
    clip = click_track(tmp_path / "clicks.wav", seconds=6.0)
    outputs = []
    for index in range(2):
        output = tmp_path / f"out{index}.json"
        job = {"job": "a", "type": "ANALYZE", "config": ALL, "inputs": [str(clip)], "output": str(output)}
        done = subprocess.run(
            [sys.executable, "-m", "node.executor.worker"],
            input=json.dumps(job) + "\n",
            capture_output=True,
            text=True,
            check=True,
        )
        answer = json.loads(done.stdout.strip().splitlines()[-1])
        assert answer["ok"], answer
        assert answer["media_type"] == "application/json"
        outputs.append(output.read_bytes())
    assert outputs[0] == outputs[1]


def test_silent_sound_has_no_beats(tmp_path: Path) -> None:
    silence = make(tmp_path / "silence.wav", "-f", "lavfi", "-i", "anullsrc=r=22050:cl=mono", "-t", "2")
    with pytest.raises(MediaError, match="silent: there are no beats"):
        _analysis(silence, tmp_path, features=["beats"])


def test_scenes_of_sound_alone_are_refused(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="scenes need a moving picture"):
        _analysis(click_track(tmp_path / "clicks.wav", seconds=2.0), tmp_path, features=["scenes"])


BAD = [
    (
        "{id: m, type: ANALYZE, config: {features: [rhythm]}, inputs: [s]}",
        "config.features",
        "unknown feature",
    ),
    ("{id: m, type: ANALYZE, config: {features: []}, inputs: [s]}", "config.features", "must be a list"),
    (
        "{id: m, type: ANALYZE, config: {features: [beats]}, inputs: [s]}\n"
        "    - {id: o, type: EFFECT, config: {effect: blur, sigma: {bind: m.energy}}, inputs: [s]}",
        "config.sigma.bind",
        "m does not compute energy",
    ),
    (
        "{id: o, type: EFFECT, config: {effect: blur, sigma: {bind: nothere.energy}}, inputs: [s]}",
        "config.sigma.bind",
        "names no ANALYZE node",
    ),
    (
        "{id: m, type: ANALYZE, config: {features: [energy]}, inputs: [s]}\n"
        "    - {id: o, type: EFFECT, inputs: [s],\n"
        "       config: {effect: blur, sigma: {bind: m.energy, range: [0, 8]}}}",
        "config.sigma.range",
        "must be from 0.1",
    ),
    (
        "{id: m, type: ANALYZE, config: {features: [energy]}, inputs: [s]}\n"
        "    - {id: o, type: TRANSFORM, config: {speed: {bind: m.energy}}, inputs: [s]}",
        "config.speed",
        "cannot be bound",
    ),
    (
        "{id: m, type: ANALYZE, config: {features: [energy]}, inputs: [s]}\n"
        "    - {id: o, type: SEGMENT, config: {at: {from: m.energy}}, inputs: [s]}",
        "config.at.from",
        "series of beats, onsets, scenes",
    ),
]


@pytest.mark.parametrize(("node", "field", "message"), BAD)
def test_bad_analysis_recipes_are_refused_with_the_field(node: str, field: str, message: str) -> None:
    text = (
        f"name: bad\ndag:\n  nodes:\n    - {{id: s, type: SOURCE, config: {{input: true}}}}\n    - {node}\n"
    )
    with pytest.raises(RecipeError, match=message) as caught:
        parse_recipe(text + "  output: s\n")
    assert caught.value.details["field"] == field


def test_a_still_image_cannot_be_analysed() -> None:
    recipe = parse_recipe(
        "name: still\ndag:\n  nodes:\n    - {id: s, type: SOURCE, config: {input: true}}\n"
        "    - {id: m, type: ANALYZE, config: {features: [scenes]}, inputs: [s]}\n  output: m\n"
    )
    with pytest.raises(RecipeError, match="ANALYZE takes video and audio, but input s is image"):
        make_plan(recipe, "0" * 64, {"s": "1" * 64}, media_types={"1" * 64: "image/png"})


def test_a_bound_step_covers_its_analysis_in_its_cache_id() -> None:
    recipe = parse_recipe((EXAMPLES / "pulse-blur.yaml").read_bytes())
    plan = make_plan(recipe, "0" * 64, {"clip": "1" * 64}, media_types={"1" * 64: "video/mp4"})
    analysis, pulse = plan.steps[1], plan.steps[2]
    assert analysis.type == "ANALYZE" and set(analysis.runtime) >= {"librosa", "ffmpeg", "numpy"}
    assert pulse.inputs == ("1" * 64, analysis.cache_id)
    assert pulse.config["params"]["sigma"] == {"bind": "music.energy", "range": [0.5, 8.0], "smooth": 0.1,
                                               "offset": 0.0}  # fmt: skip
    assert pulse.runtime.keys() == {"ffmpeg"}  # gblur takes sigma frame by frame (sendcmd)


async def _bytes(path: Path) -> bytes:
    return await asyncio.to_thread(path.read_bytes)


async def test_pulse_blur_follows_the_energy(client: Client, auth: dict[str, str], tmp_path: Path) -> None:
    """docs/examples/pulse-blur.yaml: sharp while the sound is silent, blurred once it is loud."""
    clip = await asyncio.to_thread(quiet_then_loud, tmp_path / "clip.mkv")
    ref = (await upload(client, auth, await _bytes(clip)))["cid"]
    recipe = await upload(client, auth, await _bytes(EXAMPLES / "pulse-blur.yaml"))
    run = await start(client, auth, {"recipe": recipe["cid"], "inputs": {"clip": ref}})
    record = await completed(client, run["run_id"])
    assert record["steps"]["music"]["type"] == "ANALYZE"
    assert record["steps"]["pulse"]["inputs"] == ["clip", "music"]
    output = await fetch(client, record["output"]["cid"], tmp_path / "out.mp4")
    pictures = await asyncio.to_thread(frames, output)
    assert len(pictures) == 50
    detail = [float(abs(frame[:, 1:].astype(int) - frame[:, :-1].astype(int)).mean()) for frame in pictures]
    assert detail[40] < detail[10] * 0.7, (detail[10], detail[40])


async def test_beat_cut_switches_clips_on_every_fourth_beat(
    client: Client, auth: dict[str, str], tmp_path: Path
) -> None:
    """docs/examples/beat-cut.yaml: the plan grows by its expansion (a piece per four beats and
    their join), the picture switches between the clips at those cuts, and the provenance names
    the expansion and verifies."""
    song = await asyncio.to_thread(click_track, tmp_path / "song.wav", seconds=8.0)
    red = await asyncio.to_thread(solid, tmp_path / "a.mp4", RED, seconds=8.0)
    blue = await asyncio.to_thread(solid, tmp_path / "b.mp4", BLUE, seconds=8.0)
    refs = {name: (await upload(client, auth, await _bytes(path)))["cid"] for name, path in
            (("a", red), ("b", blue), ("song", song))}  # fmt: skip
    recipe = await upload(client, auth, await _bytes(EXAMPLES / "beat-cut.yaml"))
    run = await start(client, auth, {"recipe": recipe["cid"], "inputs": refs})
    record = await completed(client, run["run_id"])
    pieces = sorted(name for name in record["steps"] if re.fullmatch(r"cut~\d+", name))
    assert len(pieces) >= 3 and record["steps"]["cut~join"]["state"] == "done"
    expansion_cid = record["steps"]["cut#cuts"]["cid"]
    expansion = json.loads(await (await client.get(f"/cache/{expansion_cid}")).read())
    cuts = expansion["cuts"]
    assert len(cuts) == len(pieces) - 1
    output = await fetch(client, record["output"]["cid"], tmp_path / "out.mp4")
    pictures = await asyncio.to_thread(frames, output)
    assert len(pictures) == 200
    bounds = [0, *(round(cut * 25) for cut in cuts), 200]
    for index, (first, end) in enumerate(itertools.pairwise(bounds)):
        colour = RED if index % 2 == 0 else BLUE
        assert near(mean_colour(pictures[first]), colour, 8), (index, first)
        assert near(mean_colour(pictures[end - 1]), colour, 8), (index, end - 1)
    provenance = await (await client.get(f"/provenance/{record['provenance_cid']}")).json()
    assert provenance["record"]["expansions"] == [expansion_cid]
    verdict = await (await client.get(f"/provenance/{record['provenance_cid']}/verify")).json()
    assert verdict["ok"], verdict
    assert any(line.startswith(f"expansion {expansion_cid}") for line in verdict["checked"])
    events = await sse(client, run["run_id"])
    again = await start(client, auth, {"recipe": recipe["cid"], "inputs": refs})
    await sse(client, again["run_id"])
    repeat = dict(await (await client.get(f"/runs/{again['run_id']}")).json())
    assert repeat["output"]["cid"] == record["output"]["cid"]
    assert {step["state"] for step in repeat["steps"].values()} == {"cached"}  # analysis and pieces too
    assert [data["added"] for _, kind, data in events if kind == "plan_expanded"] == [len(pieces) + len(
        [name for name in record["steps"] if name.startswith("cut~join")])]  # fmt: skip
    page = await page_text(client, f"/run/{run['run_id']}")
    assert 'data-step-row="cut~0"' in page  # the plan as grown
    assert '<svg class="analysis"' in page and 'class="analysis-beat"' in page


async def test_scene_flip_negates_every_other_scene(
    client: Client, auth: dict[str, str], tmp_path: Path
) -> None:
    """docs/examples/scene-flip.yaml: red, then green in negative (magenta), then blue."""
    clip = await asyncio.to_thread(colour_steps, tmp_path / "clip.mkv", [RED, GREEN, BLUE])
    ref = (await upload(client, auth, await _bytes(clip)))["cid"]
    recipe = await upload(client, auth, await _bytes(EXAMPLES / "scene-flip.yaml"))
    run = await start(client, auth, {"recipe": recipe["cid"], "inputs": {"clip": ref}})
    record = await completed(client, run["run_id"])
    output = await fetch(client, record["output"]["cid"], tmp_path / "out.mp4")
    pictures = await asyncio.to_thread(frames, output)
    assert len(pictures) == 75
    expected = {0: RED, 24: RED, 25: (255, 0, 255), 49: (255, 0, 255), 50: BLUE, 74: BLUE}
    assert {index: near(mean_colour(pictures[index]), colour, 10) for index, colour in expected.items()} == {
        index: True for index in expected
    }


def test_a_binding_on_a_still_image_is_refused() -> None:
    recipe = parse_recipe(
        "name: still\ndag:\n  nodes:\n    - {id: s, type: SOURCE, config: {input: true}}\n"
        "    - {id: i, type: SOURCE, config: {input: true}}\n"
        "    - {id: m, type: ANALYZE, config: {features: [energy]}, inputs: [s]}\n"
        "    - {id: o, type: EFFECT, config: {effect: blur, sigma: {bind: m.energy}}, inputs: [i]}\n"
        "  output: o\n"
    )
    media_types = {"1" * 64: "audio/wav", "2" * 64: "image/png"}
    with pytest.raises(RecipeError, match="animate clips, but this node's input is a still image"):
        make_plan(recipe, "0" * 64, {"s": "1" * 64, "i": "2" * 64}, media_types=media_types)


def _bound_render(tmp_path: Path, node: str) -> tuple[Any, np.ndarray, np.ndarray]:
    """Render the one step ``node`` (YAML, id o, reading s and the energy analysis m) on a clip
    silent for a second then loud; (its step, the clip's frames, the output's frames)."""
    clip = quiet_then_loud(tmp_path / "clip.mkv")
    analysis = tmp_path / "analysis.json"
    analyze(clip, {**ALL, "features": ["energy"]}, analysis)
    recipe = parse_recipe(
        "name: bound\ndag:\n  nodes:\n    - {id: s, type: SOURCE, config: {input: true}}\n"
        "    - {id: m, type: ANALYZE, config: {features: [energy]}, inputs: [s]}\n"
        f"    - {node}\n  output: o\n"
    )
    plan = make_plan(recipe, "0" * 64, {"s": "1" * 64}, media_types={"1" * 64: "video/x-matroska"})
    step = plan.steps[-1]
    output = tmp_path / "out.mkv"
    media_types = ["video/x-matroska", "application/json"]
    job = {"type": step.type, "config": {**step.config, "encode": "lossless"},
           "inputs": [str(clip), str(analysis)], "media_types": media_types}  # fmt: skip
    render(job, output)
    return step, frames(clip), frames(output)


def test_a_bound_transform_changes_frame_by_frame(tmp_path: Path) -> None:
    """TRANSFORM brightness bound to energy: ffmpeg's eq gets per-frame values (sendcmd), so
    the silent first second stays as it is and the loud second is brighter."""
    step, original, bright = _bound_render(
        tmp_path,
        "{id: o, type: TRANSFORM, inputs: [s], config: {brightness: {bind: m.energy, range: [0, 0.5]}}}",
    )
    assert step.runtime.keys() == {"ffmpeg"}  # stays in ffmpeg's filters
    assert len(bright) == len(original) == 50
    assert abs(float(bright[10].mean()) - float(original[10].mean())) < 3
    assert float(bright[40].mean()) > float(original[40].mean()) + 40
    assert not list(tmp_path.glob("*.cmd"))  # the command file goes with the step


def test_a_bound_effect_without_commands_runs_on_raw_frames(tmp_path: Path) -> None:
    """brightness (ffmpeg's lut takes no commands) bound to energy: the raw-frame path gives each
    frame its own factor: 1 while silent, 2 when loud."""
    step, original, bright = _bound_render(
        tmp_path,
        "{id: o, type: EFFECT, inputs: [s],\n"
        "       config: {effect: brightness, factor: {bind: m.energy, range: [1, 2]}}}",
    )
    assert "numpy" in step.runtime
    assert len(bright) == 50
    assert abs(float(bright[10].mean()) - float(original[10].mean())) < 1
    assert float(bright[40].mean()) > float(original[40].mean()) + 15  # brighter (bright pixels clip)
