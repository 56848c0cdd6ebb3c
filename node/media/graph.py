"""An ffmpeg filter graph under construction: inputs, labelled streams, and the command it makes.

Node types (``node.media.ops``) take :class:`Av` values (a video and/or an audio stream label
plus what is known about their timing) and return new ones, adding filters to the graph. So a
chain of single-input steps fused into one step is just function composition, and every step
runs as one ffmpeg process: one decode, one encode.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from node.media.ffmpeg import SAFE_INPUT, SWS_FLAGS, Encoding
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
        self,
        path: Path,
        info: MediaInfo,
        *,
        video_frames: int,
        loop_fps: Fraction | None = None,
        seek_s: float = 0.0,
    ) -> Av:
        """An input file as streams. A still image (``loop_fps`` given) repeats its first frame
        at that rate until the graph stops it; a variable-frame-rate clip is resampled to its
        average rate with an exact frame count, so lengths computed from frames hold. ``seek_s``
        starts decoding there (an accurate input seek: earlier frames are dropped)."""
        index = len(self._inputs)
        seek = ["-ss", f"{seek_s:.6f}"] if seek_s > 0 else []
        self._inputs.append([*SAFE_INPUT, *seek, "-i", str(path)])
        video, audio = info.video, info.audio
        sample_rate = audio.sample_rate if audio else 0
        audio_s = (audio.duration_s or info.duration_s) if audio else 0.0
        clip = Av(
            video=f"{index}:v:0" if video else None,
            audio=f"{index}:a:0" if audio else None,
            width=video.width if video else 0,
            height=video.height if video else 0,
            fps=loop_fps if loop_fps is not None else info.fps,
            frames=video_frames,
            sample_rate=sample_rate,
            samples=round(audio_s * sample_rate),
            still=loop_fps is not None,
        )
        if clip.video is None:
            return clip
        if clip.still:
            return clip.with_(
                video=self.filter(
                    clip.video, f"trim=end_frame=1,loop=loop=-1:size=1,setpts=N/({clip.fps})/TB"
                )
            )
        if video is not None and video.variable_rate:
            frames = math.floor((video.duration_s or info.duration_s) * clip.fps + Fraction(1, 2))
            return clip.with_(
                video=self.exact_frames(self.filter(clip.video, f"fps={clip.fps}"), frames), frames=frames
            )
        return clip

    def exact_frames(self, source: str, frames: int) -> str:
        """Exactly ``frames`` frames: the last one repeated if the stream ends early, cut if later."""
        return self.filter(source, f"tpad=stop_mode=clone:stop=-1,trim=end_frame={frames}")

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
        graph = ";".join([f"sws_flags={SWS_FLAGS}", *self._filters])
        return [*args, "-filter_complex", graph, *maps, *encoding.args()]
