"""Video through the whole node (real Redis and IPFS): a four-clip SEQUENCE, a fused chain,
probing, and broken media failing its step with a clear error."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from node.http.appkeys import NODE
from tests.helpers import Client, sse, start, upload
from tests.media import BLUE, GREEN, RED, WHITE, facts, frames, mean_colour, near, pattern_clip, solid

FOUR = """
name: four-clips
dag:
  nodes:
    - {id: a, type: SOURCE, config: {input: true}}
    - {id: b, type: SOURCE, config: {input: true}}
    - {id: c, type: SOURCE, config: {input: true}}
    - {id: d, type: SOURCE, config: {input: true}}
    - {id: out, type: SEQUENCE, inputs: [a, b, c, d]}
  output: out
"""


async def clip_bytes(tmp_path: Path) -> bytes:
    """A 1 s testsrc2 clip with sound (made off the event loop the test server runs on)."""
    clip = await asyncio.to_thread(pattern_clip, tmp_path / "clip.mp4", seconds=1.0)
    return await asyncio.to_thread(clip.read_bytes)


async def completed(client: Client, run_id: str) -> dict[str, Any]:
    """The run's record once its event stream has ended; it must have completed."""
    events = await sse(client, run_id)
    assert events[-1][1] == "run_completed", events[-1]
    return dict(await (await client.get(f"/runs/{run_id}")).json())


async def fetch(client: Client, cid: str, path: Path) -> Path:
    response = await client.get(f"/cache/{cid}")
    assert response.status == 200
    await asyncio.to_thread(path.write_bytes, await response.read())
    return path


async def test_four_clip_sequence_through_the_tree(
    client: Client, auth: dict[str, str], tmp_path: Path
) -> None:
    """Four 0.4 s clips, one colour each: three pairwise steps, and an H.264 + AAC MP4 output of
    40 frames showing the colours in input order."""
    colours = [RED, GREEN, BLUE, WHITE]
    clips = [
        await asyncio.to_thread(solid, tmp_path / f"{index}.mp4", colour, seconds=0.4)
        for index, colour in enumerate(colours)
    ]
    refs = [(await upload(client, auth, await asyncio.to_thread(clip.read_bytes)))["cid"] for clip in clips]
    recipe = await upload(client, auth, FOUR.encode())
    run = await start(client, auth, {"recipe": recipe["cid"], "inputs": refs})
    record = await completed(client, run["run_id"])
    assert set(record["steps"]) == {"out#0", "out#1", "out"}
    assert record["output"]["media_type"] == "video/mp4"
    output = await fetch(client, record["output"]["cid"], tmp_path / "out.mp4")
    got = await asyncio.to_thread(facts, output)
    assert (got["codecs"], got["size"], got["frames"]) == (["h264"], (160, 120), 40)
    pictures = await asyncio.to_thread(frames, output)
    assert [
        near(mean_colour(pictures[index]), colour, 8)
        for index, colour in zip((5, 15, 25, 35), colours, strict=True)
    ] == [True] * 4


async def test_video_chain_is_one_fused_step(client: Client, auth: dict[str, str], tmp_path: Path) -> None:
    recipe = (
        "name: dog-sepia\ndag:\n  nodes:\n    - {id: src, type: SOURCE, config: {input: true}}\n"
        "    - {id: dog, type: EFFECT, config: {effect: dog}, inputs: [src]}\n"
        "    - {id: out, type: EFFECT, config: {effect: sepia}, inputs: [dog]}\n  output: out\n"
    )
    source = await upload(client, auth, await clip_bytes(tmp_path))
    stored = await upload(client, auth, recipe.encode())
    record = await completed(
        client, (await start(client, auth, {"recipe": stored["cid"], "inputs": [source["cid"]]}))["run_id"]
    )
    assert record["steps"]["out"]["fused"] == ["dog", "out"] and "dog" not in record["steps"]
    got = await asyncio.to_thread(facts, await fetch(client, record["output"]["cid"], tmp_path / "out.mp4"))
    assert (got["codecs"], got["frames"]) == (["h264", "aac"], 25)


async def test_probe_reports_streams(client: Client, auth: dict[str, str], tmp_path: Path) -> None:
    clip = await upload(client, auth, await clip_bytes(tmp_path))
    for _ in range(2):  # the second answer comes from what the first stored
        response = await client.get(f"/cache/{clip['cid']}/probe")
        assert response.status == 200
        body = await response.json()
        media = body["media"]
        assert (media["kind"], media["width"], media["height"], media["fps"]) == ("video", 160, 120, "25")
        assert media["duration_s"] == pytest.approx(1.0, abs=0.05)
        assert [stream["type"] for stream in media["streams"]] == ["video", "audio"]
        assert body["cid"] == clip["cid"]


async def test_probe_of_text_is_415(client: Client, auth: dict[str, str]) -> None:
    text = await upload(client, auth, b"just words, no pictures")
    response = await client.get(f"/cache/{text['cid']}/probe")
    assert response.status == 415
    body = await response.json()
    assert body["error"]["code"] == "unsupported_media"
    assert "not a readable image, video or audio file" in body["error"]["message"]


async def test_corrupt_video_fails_its_step_with_a_clear_error(
    client: Client, auth: dict[str, str], tmp_path: Path
) -> None:
    """An MP4 cut after its first bytes (sniffed as video, unreadable): the run fails, the step's
    error says why, and nothing was stored for the step."""
    whole = await clip_bytes(tmp_path)
    broken = await upload(client, auth, whole[: len(whole) // 3])
    run = await start(client, auth, {"recipe": "invert", "inputs": [broken["cid"]]})
    events = await sse(client, run["run_id"])
    assert events[-1][1] == "run_failed"
    record = await (await client.get(f"/runs/{run['run_id']}")).json()
    assert record["status"] == "failed"
    error = record["steps"]["invert"]["error"]
    assert "input 1 is not a readable image, video or audio file" in error
    assert str(tmp_path) not in error and "/cache/" not in error


CROSSFADED = """
name: fade
dag:
  nodes:
    - {id: a, type: SOURCE, config: {input: true}}
    - {id: b, type: SOURCE, config: {input: true}}
    - {id: dark, type: EFFECT, config: {effect: invert}, inputs: [b]}
    - {id: out, type: SEQUENCE, config: {crossfade: CROSSFADE}, inputs: [a, dark]}
  output: out
"""


async def test_a_crossfade_longer_than_a_clip_is_refused_at_submission(
    client: Client, auth: dict[str, str], tmp_path: Path
) -> None:
    """Clips of 1 s and 0.6 s (the second through an effect, which keeps its length): a 0.8 s
    crossfade is a 400 naming the node, the field and the clip, with no run queued; 0.4 s runs."""
    clips = [
        await asyncio.to_thread(solid, tmp_path / "a.mp4", RED, seconds=1.0),
        await asyncio.to_thread(solid, tmp_path / "b.mp4", BLUE, seconds=0.6),
    ]
    refs = [(await upload(client, auth, await asyncio.to_thread(clip.read_bytes)))["cid"] for clip in clips]

    async def fade(crossfade: str) -> Any:
        recipe = await client.post(
            "/recipes/upload", data=CROSSFADED.replace("CROSSFADE", crossfade), headers=auth
        )
        return await client.post(
            "/runs", json={"recipe": (await recipe.json())["id"], "inputs": refs}, headers=auth
        )

    refused = await fade("0.8")
    assert refused.status == 400
    error = (await refused.json())["error"]
    assert error["code"] == "invalid_recipe" and error["details"]["field"] == "config.crossfade"
    assert "node 'out'" in error["message"] and "input 'dark' (0.60 s)" in error["message"]
    assert (await (await client.get("/runs")).json())["items"] == []
    accepted = await fade("0.4")
    assert accepted.status == 202, await accepted.text()
    assert (await sse(client, (await accepted.json())["run_id"]))[-1][1] == "run_completed"


async def test_a_video_step_keeps_its_log(client: Client, auth: dict[str, str], tmp_path: Path) -> None:
    """A video step's log (GET /runs/{id} and the run page) holds the ffmpeg command it ran,
    without the node's directories."""
    clip = await asyncio.to_thread(pattern_clip, tmp_path / "clip.mp4", seconds=0.4)
    source = await upload(client, auth, await asyncio.to_thread(clip.read_bytes))
    run = await start(client, auth, {"recipe": "invert", "inputs": [source["cid"]]})
    shown = await completed(client, run["run_id"])
    log = shown["steps"]["invert"]["log"]
    assert log.startswith("$ ffmpeg ") and "negate" in log
    assert str(client.app[NODE].settings.data_dir) not in log
    assert 'class="step-log"' in await (await client.get(f"/run/{run['run_id']}")).text()
