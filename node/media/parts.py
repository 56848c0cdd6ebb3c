"""The steps of a segmented render in a worker (``node.executor.segments``): a part's frames,
the sound once, and the join.

- ``PART``: frames ``[a, b)`` of the input through the chain's filters (a parameter bound to an
  analysis, the analysis being the part's next input, takes its values at the absolute frame
  indexes ``a`` to ``b``, by command). The input is opened
  with an accurate seek to half a frame before frame ``a`` (so frame ``a`` is the first kept,
  on a constant frame rate) and trimmed to ``b - a`` frames; the picture is the lossless
  intermediate or the delivery video (every part with the same settings; each part's encoder
  starts a closed GOP on its first frame) in Matroska, without sound;
- ``SOUND``: the input's sound cut or padded to exactly the picture's length, encoded once;
- ``JOIN``: the parts by stream copy (ffmpeg's concat demuxer on a list the step writes), the
  sound muxed in: MP4 with the index at the front for delivery, else Matroska.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

from node.media.errors import MediaError
from node.media.ffmpeg import (
    BITEXACT,
    DELIVERY_AUDIO,
    LOSSLESS_AUDIO,
    SAFE_INPUT,
    THREADS,
    Encoding,
    run_ffmpeg,
)
from node.media.graph import Graph
from node.media.probe import probe_file
from node.media.progress import Report
from node.media.render import apply_ops, following, read_record, with_commands

PART, SOUND, JOIN = "PART", "SOUND", "JOIN"


def render_part_step(job: Mapping[str, Any], output: Path, report: Report | None = None) -> str:
    """Compute a PART, SOUND or JOIN job into ``output``; the output's media type."""
    config, paths = job["config"], [Path(path) for path in job["inputs"]]
    delivery = config["encode"] == "delivery"
    if job["type"] == PART:
        names = config["ops"][0]["config"].get("analyses", [])
        records = {name: read_record(path) for name, path in zip(names, paths[1:], strict=True)}
        return _part(paths[0], config, records, delivery, output, report)
    if job["type"] == SOUND:
        return _sound(paths[0], config, delivery, output)
    return _join(paths, config, delivery, output)


def _part(  # noqa: PLR0917 - the part and its inputs
    path: Path,
    config: Mapping[str, Any],
    analyses: Mapping[str, Any],
    delivery: bool,
    output: Path,
    report: Report | None,
) -> str:
    info = probe_file(path, "input 1")
    if info.video is None:
        raise MediaError("a part of a segmented render needs a picture, but the input has none")
    first, end = config["frames"]
    seek = float((first - Fraction(1, 2)) / info.fps) if first else 0.0
    graph = Graph()
    clip = graph.add_input(path, info, video_frames=end - first, seek_s=seek)
    # The decoder's own pixel format right after the trim: without it, ffmpeg converts to the
    # chain's RGB before its accurate seek drops the frames decoded from the keyframe before the
    # part (bench.segments: about 2 CPU s per 10 s part of 720p, for frames thrown away).
    keep = f",format={info.video.pix_fmt}" if info.video.pix_fmt else ""
    trimmed = graph.filter(str(clip.video), f"trim=end_frame={end - first},setpts=PTS-STARTPTS{keep}")
    clip = clip.with_(video=trimmed, audio=None)
    ops, commands = list(config["ops"]), output.with_name(output.name + ".cmd")
    encoding = Encoding(delivery, has_video=True, has_audio=False, part=True)
    try:
        if analyses:  # one op, bound to an analysis: this part's slice of the curve, by command
            ops = [{**ops[0], "config": with_commands(ops[0], clip, analyses, commands, first)}]
        result = apply_ops(graph, [clip], ops)
        run_ffmpeg(graph.command(result, encoding), output, progress=following(result, report))
    finally:
        commands.unlink(missing_ok=True)
    return encoding.media_type


def _sound(path: Path, config: Mapping[str, Any], delivery: bool, output: Path) -> str:
    info = probe_file(path, "input 1")
    if info.audio is None:
        raise MediaError("the input has no sound to carry over")
    samples = round(config["frames"] * info.audio.sample_rate / Fraction(config["fps"]))
    codec = DELIVERY_AUDIO if delivery else LOSSLESS_AUDIO
    args = [*SAFE_INPUT, "-i", str(path), "-map", "0:a:0"]
    args += ["-af", f"apad=whole_len={samples},atrim=end_sample={samples}", *codec]
    run_ffmpeg([*args, "-threads", str(THREADS), *BITEXACT, "-f", "matroska"], output)
    return "audio/x-matroska"


def _join(paths: list[Path], config: Mapping[str, Any], delivery: bool, output: Path) -> str:
    """The parts (all inputs but the sound, which is last when there is one) joined."""
    has_sound = len(paths) > 1 and _is_sound(paths[-1])
    parts = paths[:-1] if has_sound else paths
    listing = output.with_name(output.name + ".parts")
    listing.write_text("".join(f"file '{part}'\n" for part in parts))
    try:
        args = ["-f", "concat", "-safe", "0", "-protocol_whitelist", "file", "-i", str(listing)]
        if has_sound:
            args += [*SAFE_INPUT, "-i", str(paths[-1])]
        args += ["-map", "0:v:0", *(["-map", "1:a:0"] if has_sound else []), "-c", "copy", *BITEXACT]
        container = ["-movflags", "+faststart", "-f", "mp4"] if delivery else ["-f", "matroska"]
        run_ffmpeg([*args, *container], output)
    finally:
        listing.unlink(missing_ok=True)
    return Encoding(delivery, has_video=True, has_audio=has_sound).media_type


def _is_sound(path: Path) -> bool:
    info = probe_file(path, "the sound")
    return info.video is None and info.audio is not None
