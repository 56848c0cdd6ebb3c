"""An ffmpeg filter graph under construction: inputs, labelled streams, and the command it makes.

Node types (``node.media.ops``) take :class:`Av` values (a video and/or an audio stream label
plus what is known about their timing) and return new ones, adding filters to the graph. So a
chain of single-input steps fused into one step is just function composition, and every step
runs as one ffmpeg process: one decode, one encode.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from node.media.ffmpeg import Encoding
from node.media.probe import MediaInfo


@dataclass(frozen=True)
class Av:
    """Streams flowing through the graph, and their timing.

    ``frames`` is the exact video frame count where known (0 for a still image, which loops);
    ``samples`` the audio sample count. Durations come from these, never from container
    headers, so cuts and crossfades land on exact frames."""

    video: str | None
    audio: str | None
    width: int = 0
    height: int = 0
    fps: Fraction = Fraction(25)
    frames: int = 0
    sample_rate: int = 0
    samples: int = 0
    still: bool = False
    rgb: bool = False  # the picture is already planar RGB (gbrp): no conversion needed

    @property
    def duration_s(self) -> float:
        if self.video is not None and not self.still:
            return float(self.frames / self.fps)
        return self.samples / self.sample_rate if self.sample_rate else 0.0

    def with_(self, **changes: object) -> Av:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


class Graph:
    """Collects inputs and filters; :meth:`command` gives ffmpeg's arguments."""

    def __init__(self) -> None:
        self._inputs: list[list[str]] = []
        self._filters: list[str] = []
        self._count = 0

    def label(self) -> str:
        """A fresh stream label."""
        self._count += 1
        return f"s{self._count}"

    def add_input(
        self, path: Path, info: MediaInfo, *, video_frames: int, loop_fps: Fraction | None = None
    ) -> Av:
        """An input file as streams; a still image loops at ``loop_fps`` until the graph stops it."""
        index = len(self._inputs)
        loop = loop_fps is not None
        looping = ["-loop", "1", "-framerate", str(loop_fps)] if loop_fps is not None else []
        self._inputs.append([*looping, "-i", str(path)])
        video, audio = info.video, info.audio
        sample_rate = audio.sample_rate if audio else 0
        return Av(
            video=f"{index}:v:0" if video else None,
            audio=f"{index}:a:0" if audio else None,
            width=video.width if video else 0,
            height=video.height if video else 0,
            fps=loop_fps if loop_fps is not None else info.fps,
            frames=video_frames,
            sample_rate=sample_rate,
            samples=round(info.duration_s * sample_rate) if audio else 0,
            still=loop,
        )

    def filter(self, source: str, filters: str) -> str:
        """``[source]filters[new]``: a linear chain; returns the new label."""
        out = self.label()
        self._filters.append(f"[{source}]{filters}[{out}]")
        return out

    def join(self, sources: list[str], filters: str) -> str:
        """``[a][b]...filters[new]``: a filter with several inputs; returns the new label."""
        out = self.label()
        self._filters.append("".join(f"[{source}]" for source in sources) + f"{filters}[{out}]")
        return out

    def fragment(self, text: str) -> None:
        """A graph fragment whose labels the caller made with :meth:`label`."""
        self._filters.append(text)

    def command(self, result: Av, encoding: Encoding) -> list[str]:
        """ffmpeg arguments (without the output path) that encode ``result``."""
        args = [arg for input_args in self._inputs for arg in input_args]
        maps: list[str] = []
        if result.video is not None and encoding.has_video:
            even = result.width % 2 == 0 and result.height % 2 == 0 and result.width > 0
            video = self.filter(result.video, "null" if even else encoding.even_size_filter())
            maps += ["-map", f"[{video}]"]
        if result.audio is not None and encoding.has_audio:
            audio = self.filter(result.audio, "anull")
            maps += ["-map", f"[{audio}]"]
        return [*args, "-filter_complex", ";".join(self._filters), *maps, *encoding.args()]
