"""ANALYZE in a worker: a clip's sound and pictures as a JSON analysis record.

The record (``artdag/analysis``, docs/recipes-and-media.md "Analysis") is on one timeline of
*frames*: the input's frame rate for a video, ``config.fps`` for sound alone. Event series
(``beats``, ``onsets``, ``scenes``) give ``times`` in seconds and ``frames``; per-frame series
(``energy``, ``bands``, ``loudness``) give one value per frame. Which library does what, and why:

- sound is decoded once by ffmpeg to mono 32-bit float at 22050 Hz (bit-exact resampling);
- beats, tempo and onsets: librosa (its onset envelope and dynamic-programming beat tracker);
  the tempo is the slope of the beat times, finer than librosa's tempogram bins;
- energy (RMS) and bands (low/mid/high) per frame: numpy over each frame's own samples;
- loudness: ffmpeg's ``ebur128`` (EBU R128 momentary, 400 ms windows, every 10 ms);
- scenes: ffmpeg's ``scdet`` (no OpenCV to install, and it decodes at ffmpeg's speed).

Values are rounded to 6 significant digits, so the record's bytes are the same wherever the same
libraries run on the same CPU class.
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from node.canonical import canonical_json
from node.media.errors import MediaError
from node.media.ffmpeg import BITEXACT, SAFE_INPUT, THREADS, failure
from node.media.probe import MediaInfo, count_frames, probe_file
from node.media.step_log import note

ANALYSIS_TYPE = "application/json"
RECORD_KIND = "artdag/analysis"
SAMPLE_RATE = 22050
HOP = 256  # 11.6 ms: beats land within a third of a frame at 30 fps
BANDS = {"low": (0.0, 250.0), "mid": (250.0, 4000.0), "high": (4000.0, float(SAMPLE_RATE))}
SOUND_FEATURES = ("beats", "tempo", "onsets", "energy", "bands", "loudness")
SILENCE_PEAK = 1e-4  # below this the sound is silent: nothing to track
LOUDNESS_FLOOR = -70.0  # LUFS: EBU R128's absolute gate; quieter is reported as this


def analyze(path: Path, config: Mapping[str, Any], output: Path) -> str:
    """Write the analysis record of ``path`` to ``output``; its media type."""
    info = probe_file(path, "input 1")
    features = list(config["features"])
    fps = _fps(info, config)
    frames = _frames(path, info, fps)
    record: dict[str, Any] = {
        "kind": RECORD_KIND,
        "version": 1,
        "features": features,
        "fps": _round(fps),
        "frames": frames,
        "duration_s": _round(frames / fps),
    }
    if set(features) & set(SOUND_FEATURES):
        record.update(_sound(path, info, features, fps, frames))
    if "scenes" in features:
        record["scenes"] = _scenes(path, info, fps, config["scene_threshold"])
    output.write_bytes(canonical_json(record))
    return ANALYSIS_TYPE


def _fps(info: MediaInfo, config: Mapping[str, Any]) -> float:
    """The timeline: a clip's own frame rate, else ``config.fps`` (30 by default)."""
    if info.video is not None and info.kind == "video":
        return float(info.fps)
    return float(config["fps"] or 30.0)


def _frames(path: Path, info: MediaInfo, fps: float) -> int:
    if info.video is not None and info.kind == "video":
        return max(1, count_frames(path, info, "input 1"))
    return max(1, round(info.duration_s * fps))


def _sound(path: Path, info: MediaInfo, features: list[str], fps: float, frames: int) -> dict[str, Any]:
    if info.audio is None:
        wanted = ", ".join(name for name in features if name in SOUND_FEATURES)
        raise MediaError(f"{wanted} need sound, but the input has no audio stream")
    samples = _decode(path)
    result: dict[str, Any] = {}
    rhythm: list[str] = [name for name in ("beats", "tempo", "onsets") if name in features]
    if rhythm:
        if samples.size == 0 or float(np.max(np.abs(samples))) < SILENCE_PEAK:
            raise MediaError(f"the sound is silent: there are no {' or '.join(rhythm)} to find")
        result.update(_rhythm(samples, rhythm, fps))
    windows = _frame_windows(samples, fps, frames)
    if "energy" in features:
        result["energy"] = {
            "values": [_round(math.sqrt(float(np.mean(w * w)))) if w.size else 0.0 for w in windows]
        }
    if "bands" in features:
        result["bands"] = _bands(windows)
    if "loudness" in features:
        result["loudness"] = {"unit": "LUFS", "values": _loudness(path, fps, frames)}
    return result


def _decode(path: Path) -> np.ndarray:
    command = ["ffmpeg", "-nostdin", "-loglevel", "warning", "-threads", str(THREADS), *SAFE_INPUT]
    command += ["-i", str(path), "-map", "0:a:0", "-ac", "1", "-ar", str(SAMPLE_RATE), *BITEXACT]
    command += ["-f", "f32le", "-"]
    done = subprocess.run(command, capture_output=True, check=False)  # noqa: S603
    note(command, done.stderr)
    if done.returncode != 0:
        raise failure("ffmpeg failed decoding the sound to analyse", done.stderr)
    return np.frombuffer(done.stdout, dtype="<f4")


def _rhythm(samples: np.ndarray, wanted: list[str], fps: float) -> dict[str, Any]:
    import librosa  # noqa: PLC0415 - heavy (numba); only ANALYZE steps need it

    envelope = librosa.onset.onset_strength(y=samples, sr=SAMPLE_RATE, hop_length=HOP)
    result: dict[str, Any] = {}
    if "beats" in wanted or "tempo" in wanted:
        _, beat_frames = librosa.beat.beat_track(onset_envelope=envelope, sr=SAMPLE_RATE, hop_length=HOP)
        beats = librosa.frames_to_time(beat_frames, sr=SAMPLE_RATE, hop_length=HOP)
        if "beats" in wanted:
            result["beats"] = _events(beats, fps)
        if "tempo" in wanted:
            result["tempo"] = {"bpm": _bpm(beats)}
    if "onsets" in wanted:
        onset_frames = librosa.onset.onset_detect(onset_envelope=envelope, sr=SAMPLE_RATE, hop_length=HOP)
        result["onsets"] = _events(librosa.frames_to_time(onset_frames, sr=SAMPLE_RATE, hop_length=HOP), fps)
    return result


def _bpm(beats: np.ndarray) -> float:
    """Beats per minute from the slope of a line through the beat times (0: fewer than 3)."""
    if len(beats) < 3:
        return 0.0
    slope = float(np.polyfit(np.arange(len(beats), dtype=np.float64), beats.astype(np.float64), 1)[0])
    return _round(60.0 / slope) if slope > 0 else 0.0


def _events(times: Any, fps: float) -> dict[str, list[Any]]:
    rounded = [_round(float(time)) for time in times]
    return {"times": rounded, "frames": [math.floor(time * fps + 0.5) for time in rounded]}


def _frame_windows(samples: np.ndarray, fps: float, frames: int) -> list[np.ndarray]:
    """Each frame's own samples: [i, i + 1) frame periods."""
    bounds = [round(index * SAMPLE_RATE / fps) for index in range(frames + 1)]
    return [samples[bounds[index] : bounds[index + 1]].astype(np.float64) for index in range(frames)]


def _bands(windows: list[np.ndarray]) -> dict[str, list[float]]:
    """RMS amplitude of each band's share of the spectrum, per frame (Hann window)."""
    values: dict[str, list[float]] = {name: [] for name in BANDS}
    for window in windows:
        if window.size < 2:
            for series in values.values():
                series.append(0.0)
            continue
        spectrum = np.abs(np.fft.rfft(window * np.hanning(window.size))) ** 2
        freqs = np.fft.rfftfreq(window.size, 1.0 / SAMPLE_RATE)
        for name, (low, high) in BANDS.items():
            power = float(np.sum(spectrum[(freqs >= low) & (freqs < high)]))
            values[name].append(_round(math.sqrt(2.0 * power) / window.size))
    return values


def _loudness(path: Path, fps: float, frames: int) -> list[float]:
    """EBU R128 momentary loudness at each frame's start (ffmpeg's ebur128, every 10 ms)."""
    graph = "aresample=48000,asetnsamples=n=480:p=0,ebur128=metadata=1,"
    graph += "ametadata=mode=print:key=lavfi.r128.M:file=-"
    command = ["ffmpeg", "-nostdin", "-loglevel", "error", *SAFE_INPUT, "-i", str(path), "-map", "0:a:0"]
    command += ["-af", graph, "-f", "null", "-"]
    done = subprocess.run(command, capture_output=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise failure("ffmpeg failed measuring loudness", done.stderr)
    readings = [max(LOUDNESS_FLOOR, value) for value in _metadata(done.stdout, "lavfi.r128.M").values()]
    if not readings:
        return [LOUDNESS_FLOOR] * frames
    return [
        _round(readings[min(len(readings) - 1, math.floor(index / fps * 100))]) for index in range(frames)
    ]


def _scenes(path: Path, info: MediaInfo, fps: float, threshold: float) -> dict[str, list[Any]]:
    """Cut times: frames whose difference from the one before scores above ``threshold`` %."""
    if info.video is None or info.kind != "video":
        raise MediaError("scenes need a moving picture, but the input is a still image or sound alone")
    graph = f"scdet=threshold={threshold:.6g}:sc_pass=1,metadata=mode=print:file=-"
    command = ["ffmpeg", "-nostdin", "-loglevel", "error", "-threads", str(THREADS), *SAFE_INPUT]
    command += ["-i", str(path), "-map", "0:v:0", "-vf", graph, "-f", "null", "-"]
    done = subprocess.run(command, capture_output=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise failure("ffmpeg failed detecting scene changes", done.stderr)
    found = _metadata(done.stdout, "lavfi.scd.score")
    times = sorted(found)
    return {**_events(times, fps), "scores": [_round(found[time]) for time in times]}


def _metadata(printed: bytes, key: str) -> dict[float, float]:
    """``{pts_time: value}`` from the ``metadata``/``ametadata`` filters' printout."""
    values: dict[float, float] = {}
    time = 0.0
    for line in printed.decode("ascii", "replace").splitlines():
        if line.startswith("frame:") and "pts_time:" in line:
            time = float(line.rsplit("pts_time:", 1)[1].split()[0])
        elif line.startswith(key + "="):
            value = float(line.split("=", 1)[1])
            values[time] = value if math.isfinite(value) else LOUDNESS_FLOOR
    return values


def _round(value: float) -> float:
    """6 significant digits, one spelling: what the record stores."""
    return float(f"{value:.6g}") + 0.0
