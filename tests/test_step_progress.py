"""Progress inside a long step: ffmpeg's own progress lines, and the raw-frame path's count,
reach the run's events as step_progress (frames, percent, ETA) and move the run's progress
before the step ends, so a one-step video render does not sit at 0 %."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

from node.media.progress import Tracker, follow_ffmpeg
from tests.helpers import Client, sse, start, upload
from tests.media import pattern_clip


def test_ffmpeg_progress_lines_become_frames_percent_and_eta() -> None:
    """A real ffmpeg writing 50 frames with -progress pipe:1: the tracker hears increasing
    frame counts out of 50, percents below 100, and an ETA once something is done."""
    heard: list[dict[str, Any]] = []
    tracker = Tracker(heard.append, 50, frames=50, every_s=0.0)
    source = ("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-frames:v", "50")
    command = [
        "ffmpeg",
        "-nostdin",
        "-loglevel",
        "error",
        *source,
        "-progress",
        "pipe:1",
        "-nostats",
        "-f",
        "null",
        "-",
    ]
    with subprocess.Popen(command, stdout=subprocess.PIPE) as process:
        assert process.stdout is not None
        follow_ffmpeg(process.stdout, tracker, seconds=False)
    assert process.returncode == 0 and heard
    frames = [report["frames"] for report in heard]
    assert frames == sorted(frames) and frames[-1] == 50 and {r["total_frames"] for r in heard} == {50}
    assert all(0 <= report["percent"] <= 99 for report in heard)
    assert heard[-1]["eta_s"] is not None


def test_a_tracker_reports_each_percent_once_and_never_more_often_than_asked() -> None:
    heard: list[dict[str, Any]] = []
    tracker = Tracker(heard.append, 1000, frames=1000, every_s=0.0)
    for done in range(1001):
        tracker.update(done)
    assert [report["percent"] for report in heard] == list(range(100))  # 0..99, each once
    quiet: list[dict[str, Any]] = []
    slow = Tracker(quiet.append, 1000, every_s=3600)
    for done in range(1001):
        slow.update(done)
    assert quiet == []  # nothing within its interval from the start


async def test_a_long_video_step_reports_its_frames_while_it_runs(
    client: Client, auth: dict[str, str], tmp_path: Path
) -> None:
    """One step, wait 0.25 s per frame over 12 frames (3 s): step_progress events with frames
    out of 12 arrive before the step ends, and the run's progress moves between 0 and 100."""
    clip = await asyncio.to_thread(pattern_clip, tmp_path / "clip.mp4", rate=4, seconds=3.0)
    source = await upload(client, auth, await asyncio.to_thread(clip.read_bytes))
    run = await start(
        client, auth, {"recipe": "wait", "inputs": [source["cid"]], "params": {"seconds": 0.25}}
    )
    events = await sse(client, run["run_id"])
    kinds = [kind for _, kind, _ in events]
    assert kinds[-1] == "run_completed"
    ticks = [data for _, kind, data in events if kind == "step_progress"]
    assert ticks and all(tick["step"] == "wait" and tick["total_frames"] == 12 for tick in ticks)
    assert kinds.index("step_progress") < kinds.index("step_finished")
    between = [
        data["percent"] for _, kind, data in events if kind == "progress" and 0 < data["percent"] < 100
    ]
    assert between, "the run's progress moved while its one step ran"
    shown = await (await client.get(f"/runs/{run['run_id']}")).json()
    assert "progress" not in shown["steps"]["wait"]  # a finished step shows its times, not ticks
