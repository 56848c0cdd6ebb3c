"""A video or audio step in a worker: probe the inputs, build the graph, run ffmpeg once.

The job is the scheduler's (``node.executor.worker``): ``type`` and ``config`` of a node type,
or a ``CHAIN`` whose ``config.ops`` are single-input steps fused into one pass; ``inputs`` are
local paths, ``media_types`` their media types; ``config.encode`` says lossless intermediate or
delivery encode. The answer is the output's media type.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

from node.media import ops
from node.media.analysis import RECORD_KIND
from node.media.curves import bound, frame_values
from node.media.errors import MediaError
from node.media.ffmpeg import Encoding, Progress, run_ffmpeg
from node.media.framepipe import run_effect
from node.media.graph import Av, Graph
from node.media.kinds import kind_of
from node.media.ops import TRANSFORM_COMMANDS
from node.media.probe import MediaInfo, count_frames, probe_file
from node.media.progress import Report, Tracker, follow_ffmpeg
from node.media.video_effects import BOUND_NAME, COMMANDS, VIDEO_EFFECTS, commanded
from node.pixels.effects import EFFECTS

SingleOp = Callable[[Graph, Av, Mapping[str, Any]], Av]
PairOp = Callable[[Graph, Av, Av, Mapping[str, Any]], Av]
ManyOp = Callable[[Graph, list[Av], Mapping[str, Any]], Av]

SINGLE: dict[str, SingleOp] = {
    "EFFECT": ops.effect,
    "RESIZE": ops.resize,
    "TRANSFORM": ops.transform,
    "SEGMENT": ops.segment,
}
PAIR: dict[str, PairOp] = {"LAYER": ops.layer, "BLEND": ops.blend, "SEQUENCE": ops.sequence}
MANY: dict[str, ManyOp] = {"MUX": ops.mux, "AUDIO_MIX": ops.audio_mix}


def render(job: Mapping[str, Any], output: Path, report: Report | None = None) -> str:
    """Compute ``job`` into ``output``; the output's media type. MediaError says what went wrong.
    ``report`` hears its progress (``node.media.progress``) about once a second."""
    config = job["config"]
    every_path = [Path(path) for path in job["inputs"]]
    analyses = list(config.get("analyses", ()))  # bound steps are never fused: one op
    paths = every_path[: len(every_path) - len(analyses)]
    records = {name: read_record(path) for name, path in zip(analyses, every_path[len(paths) :], strict=True)}
    media_types = (job.get("media_types") or [""] * len(every_path))[: len(paths)]
    infos = [probe_file(path, f"input {index + 1}") for index, path in enumerate(paths)]
    steps = config["ops"] if job["type"] == "CHAIN" else [{"type": job["type"], "config": config}]
    delivery = config["encode"] == "delivery"
    if _raw_frames(steps):
        _effect_on_frames(steps[0]["config"], paths[0], infos[0], records, delivery, output, report)
        return Encoding(delivery, has_video=True, has_audio=infos[0].audio is not None).media_type
    graph = Graph()
    clips = _inputs(graph, paths, infos, media_types)
    commands = output.with_name(output.name + ".cmd")
    try:
        if records:
            steps = [{**steps[0], "config": with_commands(steps[0], clips[0], records, commands)}]
        result = apply_ops(graph, clips, steps)
        encoding = Encoding(delivery, has_video=result.video is not None, has_audio=result.audio is not None)
        run_ffmpeg(graph.command(result, encoding), output, progress=following(result, report))
    finally:
        commands.unlink(missing_ok=True)
    return encoding.media_type


def read_record(path: Path) -> dict[str, Any]:
    """An analysis record an input holds (``node.media.analysis``)."""
    try:
        record = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError):
        raise MediaError("an analysis input is not an analysis record (JSON)") from None
    if not isinstance(record, dict) or record.get("kind") != RECORD_KIND:
        raise MediaError("an analysis input is not an analysis record")
    return record


def _curves(
    bindings: Mapping[str, Mapping[str, Any]], records: Mapping[str, Any], fps: float, frames: int
) -> dict[str, list[float]]:
    return {
        name: frame_values(binding, records[str(binding["bind"]).split(".", 1)[0]], fps, frames)
        for name, binding in bindings.items()
    }


def _effect_on_frames(  # noqa: PLR0917 - the step, its input and where it goes
    config: Mapping[str, Any],
    path: Path,
    info: MediaInfo,
    records: Mapping[str, Any],
    delivery: bool,
    output: Path,
    report: Report | None,
) -> None:
    """An effect on raw frames; with bound parameters, each frame gets its own values."""
    effect = EFFECTS[config["effect"]]
    params = dict(config["params"])
    encoding = Encoding(delivery, has_video=True, has_audio=info.audio is not None)
    bindings = bound(params)
    if not bindings:
        run_effect(effect, params, path, info, encoding=encoding, output=output, report=report)
        return
    frames = count_frames(path, info, "input 1")
    curves = _curves(bindings, records, float(info.fps), max(1, frames))
    whole = {param.name for param in effect.params if param.kind == "int"}
    constants = {name: value for name, value in params.items() if name not in bindings}

    def params_at(frame: int) -> dict[str, object]:
        values = {name: curve[min(frame, len(curve) - 1)] for name, curve in curves.items()}
        return {**constants, **{name: round(v) if name in whole else v for name, v in values.items()}}

    largest = {**constants, **{name: max(curve) for name, curve in curves.items()}}
    run_effect(
        effect, largest, path, info, encoding=encoding, output=output, report=report, params_at=params_at
    )


def with_commands(
    step: Mapping[str, Any], clip: Av, records: Mapping[str, Any], commands: Path, first: int = 0
) -> dict[str, Any]:
    """A bound EFFECT's or TRANSFORM's config, its bound parameters given by command; ``clip``
    starts at frame ``first`` of the timeline the curves are on (a part of a segmented render)."""
    config = step["config"]
    if step["type"] == "EFFECT":
        table = COMMANDS[config["effect"]]
        return {**config, "params": _commanded(config["params"], table, clip, records, commands, first)}
    return _commanded(config, TRANSFORM_COMMANDS, clip, records, commands, first)


def _commanded(  # noqa: PLR0917 - the values, how to send them, and for which frames
    values: Mapping[str, Any],
    table: Mapping[str, tuple[str, ...]],
    clip: Av,
    records: Mapping[str, Any],
    commands: Path,
    start: int = 0,
) -> dict[str, Any]:
    """``values`` with the bound parameters at their first frame's values, and the file of
    per-frame commands (``sendcmd``) that sets the rest (``table``: parameter -> its filter
    and the commands that set it). The curves are evaluated at absolute frame indexes, from ``start``."""
    bindings = bound(values)
    whole = _curves(bindings, records, float(clip.fps), start + max(1, clip.frames))
    curves = {name: curve[start:] for name, curve in whole.items()}
    lines, previous = [], None
    for frame in range(max(1, clip.frames)):
        now = tuple(curve[min(frame, len(curve) - 1)] for curve in curves.values())
        if now != previous:
            sends = ", ".join(
                f"[enter] {table[name][0]}{BOUND_NAME} {command} {value:.6g}"
                for name, value in zip(curves, now, strict=True)
                for command in table[name][1:]
            )
            lines.append(f"{float(frame / clip.fps):.6f} {sends};")
            previous = now
    commands.write_text("\n".join(lines) + "\n")
    first = {name: curve[0] for name, curve in curves.items()}
    return {**values, **first, "bound": sorted(bindings), "sendcmd": "'" + str(commands) + "'"}


def following(result: Av, report: Report | None) -> Progress | None:
    """What reads ffmpeg's progress for ``result``: by frames for a picture, by time for sound."""
    if report is None:
        return None
    if result.video is not None and result.frames > 0:
        tracker = Tracker(report, result.frames, frames=result.frames)
        return lambda lines: follow_ffmpeg(lines, tracker, seconds=False)
    if result.sample_rate > 0 and result.samples > 0:
        tracker = Tracker(report, result.samples / result.sample_rate)
        return lambda lines: follow_ffmpeg(lines, tracker, seconds=True)
    return None


def _raw_frames(steps: list[Mapping[str, Any]]) -> bool:
    first = steps[0]
    if first["type"] != "EFFECT":
        return False
    name, params = first["config"]["effect"], first["config"]["params"]
    if name in VIDEO_EFFECTS and (not first["config"].get("analyses") or commanded(name, bound(params))):
        return False  # a filter; its bound parameters, if any, get their values by command
    if len(steps) > 1:  # the planner never fuses these
        raise MediaError(f"effect {first['config']['effect']} cannot run inside a fused chain")
    return True


def _inputs(graph: Graph, paths: list[Path], infos: list[MediaInfo], media_types: list[str]) -> list[Av]:
    """Each input as streams; still images loop at the frame rate of the first clip."""
    stills = [
        info.kind == "image" or kind_of(media_type) == "image"
        for info, media_type in zip(infos, media_types, strict=True)
    ]
    clip_rates = [info.fps for info, still in zip(infos, stills, strict=True) if not still and info.video]
    loop_fps = clip_rates[0] if clip_rates else Fraction(25)
    return [
        graph.add_input(path, info, video_frames=0, loop_fps=loop_fps)
        if still
        else graph.add_input(path, info, video_frames=count_frames(path, info, f"input {index + 1}"))
        for index, (path, info, still) in enumerate(zip(paths, infos, stills, strict=True))
    ]


def apply_ops(graph: Graph, clips: list[Av], steps: list[Mapping[str, Any]]) -> Av:
    """The steps (a node type, then single-input ones) applied to ``clips`` in ``graph``."""
    first = steps[0]
    kind, config = first["type"], first["config"]
    if kind in PAIR:
        result = PAIR[kind](graph, clips[0], clips[1], config)
    elif kind in MANY:
        result = MANY[kind](graph, clips, config)
    elif kind in SINGLE:
        result = SINGLE[kind](graph, clips[0], config)
    else:
        raise MediaError(f"{kind} does not work on video or audio")
    for step in steps[1:]:
        result = SINGLE[step["type"]](graph, result, step["config"])
    return result


def write_atomically(render_into: Callable[[Path], str], path: Path) -> str:
    """Render into a temporary name and rename, so the output appears whole or not at all."""
    tmp_path = path.with_name(path.name + ".part")
    try:
        media_type = render_into(tmp_path)
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)
    return media_type
