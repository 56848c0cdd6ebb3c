"""Effects with no ffmpeg filter, on video: raw RGB frames piped through the numpy function.

One ffmpeg decodes the picture to ``rgb24`` on its stdout; each frame goes through the image
effect (exactly the image result, frame by frame); a second ffmpeg reads the frames on its
stdin, takes the sound from the original input untouched, and encodes. Frames are read and
written one at a time, so memory stays at a few frames whatever the clip's length. Timing is
the input's frame rate (constant frame rate assumed, as ffmpeg's rawvideo demuxer needs).
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np

from node.media.errors import MediaError
from node.media.ffmpeg import BITEXACT, SAFE_INPUT, SWS_FLAGS, THREADS, Encoding, failure
from node.media.probe import MediaInfo
from node.media.progress import Report, Tracker
from node.media.step_log import note
from node.memory import ensure_fits
from node.pixels.effects import Effect
from node.pixels.footprint import video_frame_bytes

ParamsAt = Callable[[int], dict[str, object]]  # a frame's index -> the effect's parameters for it


def run_effect(
    effect: Effect,
    params: dict[str, object],
    source: Path,
    info: MediaInfo,
    *,
    encoding: Encoding,
    output: Path,
    report: Report | None = None,
    params_at: ParamsAt | None = None,
) -> None:
    """Apply ``effect`` to every frame of ``source`` (probed as ``info``) into ``output``;
    ``report`` hears the frames done about once a second. ``params_at`` gives each frame its own
    parameters (bound to an analysis); ``params`` are then the largest, for the memory estimate."""
    video = info.video
    if video is None or effect.apply is None:
        raise MediaError(f"effect {effect.name} needs a picture, but this input has only audio")
    ensure_fits(
        video_frame_bytes(effect.name, params, video.width, video.height),
        f"{effect.name} on {video.width}x{video.height} frames",
    )
    frame_bytes = video.width * video.height * 3
    resample = [f"fps={info.fps}"] if video.variable_rate else []  # frames evenly spaced, as rawvideo assumes
    decode = [
        "ffmpeg",
        "-nostdin",
        "-loglevel",
        "warning",
        "-threads",
        str(THREADS),
        *SAFE_INPUT,
        "-i",
        str(source),
    ]
    decode += ["-map", "0:v:0", "-sws_flags", SWS_FLAGS, *(["-vf", *resample] if resample else [])]
    decode += [*BITEXACT, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    size = f"{video.width}x{video.height}"
    encode = [
        "ffmpeg",
        "-nostdin",
        "-loglevel",
        "warning",
        "-y",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-s",
        size,
    ]
    encode += ["-framerate", str(info.fps), "-i", "-", *SAFE_INPUT, "-i", str(source), "-map", "0:v"]
    encode += [*(["-map", "1:a:0"] if info.audio else []), "-sws_flags", SWS_FLAGS]
    encode += ["-vf", encoding.even_size_filter(), *encoding.args(), str(output)]
    with tempfile.TemporaryFile() as decode_log, tempfile.TemporaryFile() as encode_log:
        decoder = subprocess.Popen(decode, stdout=subprocess.PIPE, stderr=decode_log)  # noqa: S603
        encoder = subprocess.Popen(encode, stdin=subprocess.PIPE, stderr=encode_log)  # noqa: S603
        assert decoder.stdout is not None and encoder.stdin is not None  # noqa: S101 - PIPEs
        try:
            expected = max(1, round(info.duration_s * float(info.fps)))
            tracker = Tracker(report, expected, frames=expected)
            _pump(
                decoder.stdout,
                encoder.stdin,
                frame_bytes,
                (video.height, video.width),
                effect,
                params_at or (lambda _: params),
                tracker,
            )
        finally:
            encoder.stdin.close()
            decoder.stdout.close()
            decoded, encoded = decoder.wait(), encoder.wait()
        for command, log in ((decode, decode_log), (encode, encode_log)):
            log.seek(0)
            note(command, log.read())
        # The encoder first: when it fails, the decoder only reports the pipe it broke.
        for code, log, what in ((encoded, encode_log, "encoding"), (decoded, decode_log, "decoding")):
            if code != 0:
                log.seek(0)
                raise failure(f"ffmpeg failed {what} for effect {effect.name}", log.read())


def _pump(  # noqa: PLR0917 - a private loop's plumbing
    frames_in: IO[bytes],
    frames_out: IO[bytes],
    frame_bytes: int,
    shape: tuple[int, int],
    effect: Effect,
    params_at: ParamsAt,
    tracker: Tracker,
) -> None:
    assert effect.apply is not None  # noqa: S101 - checked by the caller
    done = 0
    while True:
        raw = frames_in.read(frame_bytes)
        if len(raw) < frame_bytes:
            return  # the end (a short read at the end is ffmpeg stopping mid-frame: its error says why)
        pixels = np.frombuffer(raw, dtype=np.uint8).reshape(*shape, 3)
        try:
            frames_out.write(np.ascontiguousarray(effect.apply(pixels, params_at(done))).tobytes())
        except BrokenPipeError:
            return  # the encoder stopped; its exit code and log say why
        done += 1
        tracker.update(done)
