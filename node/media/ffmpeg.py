"""Running ffmpeg so that the same inputs always give the same bytes.

Every command gets the bit-exact flags, a fixed thread count (x264's output depends on it), no
metadata or chapters from the inputs, and no implicit frame dropping or duplication. Outputs
are either *lossless intermediates* (FFV1 video, PCM audio, in Matroska: every later step reads
exactly what this one made) or the *delivery encode* (H.264 + AAC in MP4 with the index at the
front), which only a plan's final output gets (docs/recipes-and-media.md "Outputs").
"""

from __future__ import annotations

import functools
import platform
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from node.media.errors import MediaError
from node.media.step_log import note, scrub
from node.memory import OutOfMemory, ffmpeg_ran_out, ran_out

Progress = Callable[[Iterable[bytes]], None]  # reads ffmpeg's -progress lines as they come
THREADS = 4  # fixed, never the machine's core count: x264's bytes depend on it
LOSSLESS_VIDEO = ("-c:v", "ffv1", "-level", "3", "-g", "1", "-slices", "4", "-slicecrc", "1")
LOSSLESS_AUDIO = ("-c:a", "pcm_s16le")
DELIVERY_VIDEO = ("-c:v", "libx264", "-preset", "medium", "-crf", "18", "-pix_fmt", "yuv420p")
DELIVERY_AUDIO = ("-c:a", "aac", "-b:a", "192k")
BITEXACT = (
    "-fflags",
    "+bitexact",
    "-flags:v",
    "+bitexact",
    "-flags:a",
    "+bitexact",
    "-map_metadata",
    "-1",
    "-map_chapters",
    "-1",
    "-fps_mode",
    "passthrough",
)
STDERR_TAIL = 600  # characters of ffmpeg's complaint kept in a step's error
# Containers a step may read, and files only: a playlist (HLS, concat) could otherwise make
# ffmpeg read any file on the node, or the network.
INPUT_FORMATS = (
    "mov,matroska,webm,avi,mpegts,mpeg,flv,wav,aiff,mp3,ogg,flac,aac,w64,"
    "image2,png_pipe,jpeg_pipe,webp_pipe,bmp_pipe,tiff_pipe,gif,gif_pipe"
)
SAFE_INPUT = ("-protocol_whitelist", "file", "-format_whitelist", INPUT_FORMATS)
# Exact, CPU-independent pixel format conversion (swscale's fast paths round differently).
SWS_FLAGS = "accurate_rnd+bitexact+full_chroma_int"


@dataclass(frozen=True)
class Encoding:
    """How a step writes its output: codecs, container and the media type that results."""

    delivery: bool
    has_video: bool
    has_audio: bool
    part: bool = False  # a part of a segmented render: the delivery codecs in Matroska, to be joined

    def args(self) -> list[str]:
        """Codec and container arguments (after the ``-map`` options)."""
        args: list[str] = []
        if self.has_video:
            args += DELIVERY_VIDEO if self.delivery else LOSSLESS_VIDEO
        if self.has_audio:
            args += DELIVERY_AUDIO if self.delivery else LOSSLESS_AUDIO
        args += ["-threads", str(THREADS), *BITEXACT]
        if self.delivery and not self.part:
            return [*args, "-movflags", "+faststart", "-f", "mp4"]
        return [*args, "-f", "matroska"]

    @property
    def media_type(self) -> str:
        main = "video" if self.has_video else "audio"
        return f"{main}/mp4" if self.delivery and not self.part else f"{main}/x-matroska"

    def even_size_filter(self) -> str:
        """H.264 in 4:2:0 needs even sizes: pad odd ones by one black row or column."""
        return "pad=ceil(iw/2)*2:ceil(ih/2)*2" if self.delivery else "null"


def run_ffmpeg(
    args: list[str], output: Path, timeout_s: float | None = None, progress: Progress | None = None
) -> None:
    """Run ``ffmpeg ARGS OUTPUT`` (quiet, never asking); MediaError with ffmpeg's reason. With
    ``progress``, ffmpeg's own progress lines are read as it works and passed to it."""
    command = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "warning", "-y", *args, str(output)]
    try:
        if progress is None:
            done = subprocess.run(command, capture_output=True, timeout=timeout_s, check=False)  # noqa: S603
            code, stderr = done.returncode, done.stderr
        else:
            code, stderr = _run_following(command, progress)
    except FileNotFoundError:
        raise MediaError("ffmpeg is not installed on this node") from None
    note(command, stderr)
    if code != 0:
        raise failure("ffmpeg failed", stderr)


def _run_following(command: list[str], progress: Progress) -> tuple[int, bytes]:
    """Run ``command`` with ``-progress pipe:1``, handing each line to ``progress``; its exit
    code and stderr (kept in a file, so a chatty ffmpeg never blocks on a full pipe)."""
    following = [*command[:-1], "-progress", "pipe:1", "-nostats", command[-1]]
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(following, stdout=subprocess.PIPE, stderr=errors)  # noqa: S603
        assert process.stdout is not None  # noqa: S101 - a PIPE
        try:
            progress(process.stdout)
        finally:
            process.stdout.close()
            code = process.wait()
        errors.seek(0)
        return code, errors.read()


def failure(what: str, stderr: bytes) -> MediaError | OutOfMemory:
    """The error for an ffmpeg that exited with ``stderr``: OutOfMemory when an allocation
    failed (the worker's memory limit, which ffmpeg inherits), else MediaError with its reason."""
    tail = stderr_tail(stderr)
    if ffmpeg_ran_out(tail):
        return OutOfMemory(f"{ran_out(what.replace(' failed', ''))} (ffmpeg: {tail})")
    return MediaError(f"{what}: {tail}")


def stderr_tail(stderr: bytes) -> str:
    """The last lines of a tool's complaint, short enough for an error message, without the
    node's directories or memory addresses (clients read it)."""
    text = scrub(stderr.decode("utf-8", "replace").strip() or "no message")
    return text[-STDERR_TAIL:].replace("\n", "; ")


def ffmpeg_version() -> str:
    """ffmpeg's version and its libraries' versions: what decides the bytes it writes."""
    return _ffmpeg_version()


@functools.cache
def _ffmpeg_version() -> str:
    if shutil.which("ffmpeg") is None:
        return "none"
    done = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True, check=False)  # noqa: S607
    first = done.stdout.splitlines()[0] if done.stdout else ""
    found = re.match(r"ffmpeg version (\S+)", first)
    libraries = re.findall(r"^(libav\w+|libsw\w+|libpostproc)\s+(\d+\.\s*\d+\.\s*\d+)", done.stdout, re.M)
    parts = [found.group(1) if found else "unknown"]
    parts += [f"{name} {number.replace(' ', '')}" for name, number in libraries]
    return "; ".join([*parts, f"x264 {_x264_version()}", f"cpu {cpu_class()}"])


def _x264_version() -> str:
    """libx264's core version and revision, which ffmpeg does not print: x264 writes them into
    every stream it encodes, so encode one tiny frame and read them back."""
    command = [
        "ffmpeg",
        "-nostdin",
        "-loglevel",
        "error",
        "-f",
        "lavfi",
        "-i",
        "color=size=16x16:duration=0.04",
    ]
    command += ["-frames:v", "1", "-c:v", "libx264", "-f", "h264", "-"]
    done = subprocess.run(command, capture_output=True, check=False)  # noqa: S603
    found = re.search(rb"x264 - core (\d+)(?: (r\d+))?", done.stdout)
    return " ".join(part.decode() for part in found.groups() if part) if found else "none"


def cpu_class() -> str:
    """The machine and the widest SIMD ffmpeg uses on it: ffmpeg's float filters (gblur, the
    audio mixer and resampler) give different low bits with AVX2 and without, so the same bytes
    are only promised between nodes of one class."""
    machine = platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), [])
    except OSError:
        flags = []
    simd = next((name for name in ("avx512f", "avx2", "avx", "sse4_2") if name in flags), "")
    return f"{machine} {simd}".strip()
