"""What a media file holds (duration, size, frame rate, streams), read with ffprobe.

Used to validate a step's inputs before ffmpeg runs (so an artist reads "input 2 has no audio"
rather than an ffmpeg trace) and by ``GET /cache/{ref}/probe``.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from node.media.errors import MediaError
from node.media.ffmpeg import SAFE_INPUT, stderr_tail

PROBE_TIMEOUT_S = 60.0
MAX_FPS = 240
VFR_TOLERANCE = 0.01  # average rate this far from the base rate: variable frame rate
_IMAGE_FORMATS = ("_pipe", "image2")


@dataclass(frozen=True)
class Stream:
    """One stream of a media file."""

    index: int
    type: str  # video, audio, subtitle, data
    codec: str
    width: int = 0
    height: int = 0
    fps: str = ""  # a fraction, "30000/1001"
    pix_fmt: str = ""
    sample_rate: int = 0
    channels: int = 0
    duration_s: float = 0.0  # the stream's own, which the container's may exceed
    variable_rate: bool = False  # frames are not evenly spaced (phones, screen recordings)


@dataclass(frozen=True)
class MediaInfo:
    """A media file's container, duration and streams."""

    format: str
    duration_s: float
    streams: tuple[Stream, ...] = field(default_factory=tuple)

    @property
    def kind(self) -> str:
        """image, video or audio: what the planner and the node types call it."""
        if self.video is not None and any(name in self.format for name in _IMAGE_FORMATS):
            return "image"
        return "video" if self.video is not None else "audio"

    @property
    def video(self) -> Stream | None:
        return next((stream for stream in self.streams if stream.type == "video"), None)

    @property
    def audio(self) -> Stream | None:
        return next((stream for stream in self.streams if stream.type == "audio"), None)

    @property
    def fps(self) -> Fraction:
        """The first video stream's frame rate (25 when it has none or ffprobe cannot tell)."""
        rate = Fraction(self.video.fps) if self.video is not None and self.video.fps else Fraction(0)
        return rate if rate > 0 else Fraction(25)

    @property
    def sample_rate(self) -> int:
        return self.audio.sample_rate if self.audio is not None else 0

    def as_json(self) -> dict[str, Any]:
        """What the API shows."""
        video, audio = self.video, self.audio
        return {
            "kind": self.kind,
            "format": self.format,
            "duration_s": self.duration_s,
            "width": video.width if video else None,
            "height": video.height if video else None,
            "fps": video.fps if video else None,
            "sample_rate": audio.sample_rate if audio else None,
            "channels": audio.channels if audio else None,
            "streams": [asdict(stream) for stream in self.streams],
        }


def probe_file(path: Path, label: str = "the file") -> MediaInfo:
    """Probe ``path``; MediaError naming ``label`` if it is empty, unreadable or has no streams."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise MediaError(f"{label} cannot be read: {exc.strerror}") from None
    if size == 0:
        raise MediaError(f"{label} is empty (0 bytes)")
    report = _ffprobe(["-show_format", "-show_streams"], path, label)
    info = parse_probe(report)
    if not info.streams:
        raise MediaError(f"{label} has no video or audio stream")
    return info


def count_frames(path: Path, info: MediaInfo, label: str = "the file") -> int:
    """The exact number of frames of the first video stream (0 without one): packets counted
    by ffprobe, which reads the file but decodes nothing."""
    if info.video is None:
        return 0
    report = _ffprobe(
        ["-select_streams", "v:0", "-count_packets", "-show_entries", "stream=nb_read_packets"], path, label
    )
    try:
        return int(report["streams"][0]["nb_read_packets"])
    except (ValueError, KeyError, IndexError):
        raise MediaError(f"the frames of {label} cannot be counted") from None


def _ffprobe(options: list[str], path: Path, label: str) -> dict[str, Any]:
    """ffprobe's JSON report on ``path``; MediaError naming ``label`` (never the path)."""
    command = ["ffprobe", "-v", "error", *SAFE_INPUT, *options, "-of", "json", str(path)]
    try:
        done = subprocess.run(command, capture_output=True, timeout=PROBE_TIMEOUT_S, check=False)  # noqa: S603
    except FileNotFoundError:
        raise MediaError("ffprobe is not installed on this node") from None
    except subprocess.TimeoutExpired:
        raise MediaError(f"{label} could not be read within {PROBE_TIMEOUT_S:.0f} s") from None
    if done.returncode != 0:
        complaint = stderr_tail(done.stderr).replace(str(path), label)
        raise MediaError(f"{label} is not a readable image, video or audio file ({complaint})")
    report: dict[str, Any] = json.loads(done.stdout or b"{}")
    return report


def parse_probe(report: dict[str, Any]) -> MediaInfo:
    """A MediaInfo from ffprobe's JSON (``-show_format -show_streams``)."""
    streams = tuple(
        _stream(raw)
        for raw in report.get("streams", [])
        if raw.get("codec_type") in ("video", "audio")
        and not raw.get("disposition", {}).get("attached_pic")  # cover art of a song is not video
    )
    container = report.get("format", {})
    return MediaInfo(
        format=str(container.get("format_name", "unknown")),
        duration_s=_number(container.get("duration")),
        streams=streams,
    )


def _stream(raw: dict[str, Any]) -> Stream:
    width, height = int(raw.get("width", 0)), int(raw.get("height", 0))
    if _rotation(raw) % 180 == 90:  # ffmpeg turns such frames upright when it decodes them
        width, height = height, width
    base, average = _fraction(raw.get("r_frame_rate")), _fraction(raw.get("avg_frame_rate"))
    variable = bool(base and average and abs(average / base - 1) > VFR_TOLERANCE)
    rate = average if variable else base or average
    is_video = raw["codec_type"] == "video"
    return Stream(
        index=int(raw.get("index", 0)),
        type=str(raw["codec_type"]),
        codec=str(raw.get("codec_name", "unknown")),
        width=width,
        height=height,
        fps=str(rate.limit_denominator(1001)) if is_video and rate and rate <= MAX_FPS else "",
        pix_fmt=str(raw.get("pix_fmt", "")),
        sample_rate=int(_number(raw.get("sample_rate"))),
        channels=int(raw.get("channels", 0)),
        duration_s=_number(raw.get("duration")) or _clock(raw.get("tags", {}).get("DURATION")),
        variable_rate=variable and is_video,
    )


def _clock(value: Any) -> float:
    """Seconds of a Matroska stream duration tag, "HH:MM:SS.fraction"; 0 if absent."""
    hours, _, rest = str(value or "").partition(":")
    minutes, _, seconds = rest.partition(":")
    try:
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return 0.0


def _rotation(raw: dict[str, Any]) -> int:
    for side_data in raw.get("side_data_list", []):
        if "rotation" in side_data:
            return round(_number(side_data["rotation"]))
    return round(_number(raw.get("tags", {}).get("rotate", 0)))


def _fraction(value: Any) -> Fraction:
    numerator, _, denominator = str(value or "0/0").partition("/")
    if numerator.isdigit() and denominator.isdigit() and int(denominator):
        return Fraction(int(numerator), int(denominator))
    return Fraction(0)


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0
