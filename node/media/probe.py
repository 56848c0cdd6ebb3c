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
from node.media.ffmpeg import stderr_tail

PROBE_TIMEOUT_S = 60.0
MAX_FPS = 240
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
    command = ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)]
    try:
        done = subprocess.run(command, capture_output=True, timeout=PROBE_TIMEOUT_S, check=False)  # noqa: S603
    except FileNotFoundError:
        raise MediaError("ffprobe is not installed on this node") from None
    except subprocess.TimeoutExpired:
        raise MediaError(f"{label} could not be read within {PROBE_TIMEOUT_S:.0f} s") from None
    if done.returncode != 0:
        raise MediaError(f"{label} is not a readable image, video or audio file ({stderr_tail(done.stderr)})")
    info = parse_probe(json.loads(done.stdout or b"{}"))
    if not info.streams:
        raise MediaError(f"{label} has no video or audio stream")
    return info


def parse_probe(report: dict[str, Any]) -> MediaInfo:
    """A MediaInfo from ffprobe's JSON (``-show_format -show_streams``)."""
    streams = tuple(
        _stream(raw) for raw in report.get("streams", []) if raw.get("codec_type") in ("video", "audio")
    )
    container = report.get("format", {})
    return MediaInfo(
        format=str(container.get("format_name", "unknown")),
        duration_s=_number(container.get("duration")),
        streams=streams,
    )


def _stream(raw: dict[str, Any]) -> Stream:
    return Stream(
        index=int(raw.get("index", 0)),
        type=str(raw["codec_type"]),
        codec=str(raw.get("codec_name", "unknown")),
        width=int(raw.get("width", 0)),
        height=int(raw.get("height", 0)),
        fps=_rate(raw) if raw["codec_type"] == "video" else "",
        pix_fmt=str(raw.get("pix_fmt", "")),
        sample_rate=int(_number(raw.get("sample_rate"))),
        channels=int(raw.get("channels", 0)),
    )


def _rate(raw: dict[str, Any]) -> str:
    """The frame rate: the stream's base rate, or its average where the base rate is a time
    base rather than a rate (variable frame rate files)."""
    for key in ("r_frame_rate", "avg_frame_rate"):
        value = str(raw.get(key, "0/0"))
        numerator, _, denominator = value.partition("/")
        if numerator.isdigit() and denominator.isdigit() and int(numerator) and int(denominator):
            rate = Fraction(int(numerator), int(denominator))
            if rate <= MAX_FPS:
                return str(rate)
    return ""


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0
