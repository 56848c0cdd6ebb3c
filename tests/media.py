"""Media made for the tests with ``ffmpeg -f lavfi`` (testsrc2, solid colours, sine), and
readers for what the node makes: decoded frames, decoded samples, probe facts."""

from __future__ import annotations

import subprocess
import wave
from pathlib import Path
from typing import Any

import numpy as np

from node.media.probe import MediaInfo, count_frames, probe_file

Colour = tuple[int, int, int]
RED: Colour = (255, 0, 0)
GREEN: Colour = (0, 255, 0)
BLUE: Colour = (0, 0, 255)
WHITE: Colour = (255, 255, 255)
QUIET = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
H264 = ["-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-pix_fmt", "yuv444p"]


def make(path: Path, *args: str) -> Path:
    """Run ``ffmpeg ARGS PATH``; the path."""
    subprocess.run([*QUIET, *args, str(path)], check=True, capture_output=True)
    return path


def pattern_clip(
    path: Path, *, size: str = "160x120", rate: int = 25, seconds: float = 2.0, tone: int = 440
) -> Path:
    """testsrc2 picture with a sine tone, H.264 (lossless) + AAC in MP4."""
    return make(
        path,
        *("-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}"),
        *("-f", "lavfi", "-i", f"sine=frequency={tone}:sample_rate=48000:duration={seconds}"),
        *H264,
        *("-c:a", "aac", "-shortest"),
    )


def solid(path: Path, colour: Colour, *, size: str = "160x120", rate: int = 25, seconds: float = 1.0) -> Path:
    """One solid colour, no sound, lossless H.264 in MP4 (Matroska for odd cases)."""
    hex_colour = "0x{:02x}{:02x}{:02x}".format(*colour)
    return make(
        path, "-f", "lavfi", "-i", f"color=c={hex_colour}:size={size}:rate={rate}:duration={seconds}", *H264
    )


def colour_steps(path: Path, colours: list[Colour], *, seconds_each: float = 1.0, tone: int = 440) -> Path:
    """One second (``seconds_each``) per colour, one after another, with a sine tone."""
    sources = []
    for colour in colours:
        hex_colour = "0x{:02x}{:02x}{:02x}".format(*colour)
        sources += ["-f", "lavfi", "-i", f"color=c={hex_colour}:size=160x120:rate=25:duration={seconds_each}"]
    total = seconds_each * len(colours)
    sources += ["-f", "lavfi", "-i", f"sine=frequency={tone}:sample_rate=48000:duration={total}"]
    joined = "".join(f"[{index}:v]" for index in range(len(colours)))
    graph = f"{joined}concat=n={len(colours)}:v=1:a=0[v]"
    return make(
        path,
        *sources,
        "-filter_complex",
        graph,
        "-map",
        "[v]",
        "-map",
        f"{len(colours)}:a",
        *H264,
        "-c:a",
        "pcm_s16le",
    )


def tone(path: Path, *, frequency: int = 440, seconds: float = 2.0, sample_rate: int = 44100) -> Path:
    """A sine tone in WAV."""
    return make(
        path, "-f", "lavfi", "-i", f"sine=frequency={frequency}:sample_rate={sample_rate}:duration={seconds}"
    )


def frames(path: Path) -> np.ndarray:
    """Every frame as RGB uint8, shape (frames, height, width, 3)."""
    info = probe_file(path)
    assert info.video is not None
    raw = subprocess.run(
        [*QUIET, "-i", str(path), "-map", "0:v:0", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        check=True,
        capture_output=True,
    ).stdout
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, info.video.height, info.video.width, 3)


def samples(path: Path) -> np.ndarray:
    """The first audio stream as mono float64 samples at its own rate."""
    raw = subprocess.run(
        [*QUIET, "-i", str(path), "-map", "0:a:0", "-ac", "1", "-f", "f64le", "-"],
        check=True,
        capture_output=True,
    ).stdout
    return np.frombuffer(raw, dtype=np.float64)


def facts(path: Path) -> dict[str, Any]:
    """What the tests check of an output: container, streams, size, rate, frame count, duration."""
    info: MediaInfo = probe_file(path)
    video, audio = info.video, info.audio
    return {
        "format": info.format,
        "streams": [stream.type for stream in info.streams],
        "codecs": [stream.codec for stream in info.streams],
        "size": (video.width, video.height) if video else None,
        "fps": video.fps if video else None,
        "frames": count_frames(path, info),
        "sample_rate": audio.sample_rate if audio else None,
        "audio_s": round(len(samples(path)) / audio.sample_rate, 3) if audio else None,
    }


def mean_colour(frame: np.ndarray) -> Colour:
    """The mean colour of a frame (or part of one), rounded."""
    red, green, blue = (round(float(value)) for value in frame.reshape(-1, 3).mean(axis=0))
    return red, green, blue


def near(colour: Colour, expected: Colour, tolerance: int = 6) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(colour, expected, strict=True))


def click_track(path: Path, *, bpm: float = 120.0, seconds: float = 8.0, first_s: float = 0.25) -> Path:
    """Noise-burst clicks at ``bpm`` from ``first_s`` on, 22050 Hz mono WAV; the click times
    are ``first_s + k * 60 / bpm``."""
    rate = 22050
    rng = np.random.default_rng(7)
    length = int(0.03 * rate)
    burst = rng.standard_normal(length) * np.exp(-np.arange(length) / (0.005 * rate)) * 0.5
    sound = np.zeros(int(seconds * rate))
    time = first_s
    while time < seconds - 0.03:
        start = round(time * rate)
        sound[start : start + length] += burst
        time += 60.0 / bpm
    pcm = (np.clip(sound, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return path


def quiet_then_loud(path: Path, *, seconds_each: float = 1.0) -> Path:
    """testsrc2 for twice ``seconds_each``: silent at first, then a loud tone."""
    total = seconds_each * 2
    return make(
        path,
        *("-f", "lavfi", "-i", f"testsrc2=size=160x120:rate=25:duration={total}"),
        *("-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={total}"),
        "-af",
        f"volume=enable='lt(t,{seconds_each})':volume=0",
        *H264,
        *("-c:a", "pcm_s16le", "-shortest"),
    )
