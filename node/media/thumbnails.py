"""Thumbnails: a small WebP picture of an image, a frame of a video, the waveform of a sound.

Made by ``python -m node.media.thumbnails SOURCE TARGET MEDIA_TYPE TIMEOUT_S`` in a process of
its own (``node.store.thumbnail_cache`` starts it), so a deadline can kill it with the ffmpeg it
started, and a hostile file's decoder cannot take the node's memory with it. It exits 0 with
TARGET written, or FAILED (TIMED_OUT) with the reason as the last line of its stderr.
"""

from __future__ import annotations

import subprocess
import sys
import time
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from node.media.errors import MediaError
from node.media.ffmpeg import SAFE_INPUT, run_ffmpeg
from node.media.kinds import kind_of
from node.media.probe import probe_file

SIZE = 320  # the longest side of an image's or a video's thumbnail, in pixels
WAVEFORM_BOX = (640, 120)
WAVEFORM_COLOUR = "#4a7bd0"
WEBP_QUALITY, WEBP_METHOD = 80, 4  # method: speed against size, 0 (fast) to 6
MAX_PIXELS = 64_000_000  # larger images are refused before they are decoded
SHORT_CLIP_S = 2.0  # shorter videos show their first frame, longer ones the frame at 1 s
PNG_FRAME = ("-frames:v", "1", "-f", "image2", "-update", "1", "-c:v", "png")
FAILED = 3  # the exit status of a thumbnail that cannot be made
TIMED_OUT = 4  # the exit status of a thumbnail that took too long (it may not, another time)


class NoThumbnail(MediaError):
    """Content of a kind that has no thumbnail: neither an image, a video nor audio."""


class TookTooLong(MediaError):
    """Making the thumbnail took longer than it may."""


def make_thumbnail(source: Path, target: Path, media_type: str, timeout_s: float) -> None:
    """Write the thumbnail of ``source`` (content of ``media_type``) to ``target`` as WebP, within
    ``timeout_s``; MediaError (NoThumbnail: not media) when it cannot be made."""
    kind = kind_of(media_type)
    if kind is None:
        raise NoThumbnail(f"{media_type} content has no thumbnail; only images, video and audio do")
    if kind == "image":
        _image_thumbnail(source, target)
        return
    deadline = time.monotonic() + timeout_s
    info = probe_file(source, "the content")
    frame = target.with_name(f"{target.name}.png")
    try:
        if info.video is not None:
            starts = (1.0, 0.0) if info.duration_s >= SHORT_CLIP_S else (0.0,)
            for start in starts:  # a video stream can end before its container says
                _video_frame(source, info.video.index, start, frame, deadline)
                if frame.is_file() and frame.stat().st_size > 0:
                    break
        elif info.audio is not None:
            _waveform(source, info.audio.index, frame, deadline)
        if not frame.is_file() or frame.stat().st_size == 0:
            raise MediaError("the content has no picture or sound to show")
        _image_thumbnail(frame, target, WAVEFORM_BOX if info.video is None else (SIZE, SIZE))
    finally:
        frame.unlink(missing_ok=True)


def _video_frame(source: Path, stream: int, start: float, frame: Path, deadline: float) -> None:
    fit = f"scale=w='min({SIZE},iw)':h='min({SIZE},ih)':force_original_aspect_ratio=decrease"
    args = [*SAFE_INPUT, "-ss", f"{start:g}", "-i", str(source), "-map", f"0:{stream}", "-vf", fit]
    _ffmpeg([*args, *PNG_FRAME], frame, deadline)


def _waveform(source: Path, stream: int, picture: Path, deadline: float) -> None:
    width, height = WAVEFORM_BOX
    graph = f"[0:{stream}]showwavespic=s={width}x{height}:scale=sqrt:colors={WAVEFORM_COLOUR}"
    _ffmpeg([*SAFE_INPUT, "-i", str(source), "-filter_complex", graph, *PNG_FRAME], picture, deadline)


def _ffmpeg(args: list[str], output: Path, deadline: float) -> None:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TookTooLong("the thumbnail took too long to make")
    try:
        run_ffmpeg(args, output, timeout_s=left)
    except subprocess.TimeoutExpired:
        raise TookTooLong("the thumbnail took too long to make") from None


def _image_thumbnail(source: Path, target: Path, box: tuple[int, int] = (SIZE, SIZE)) -> None:
    try:
        with warnings.catch_warnings():
            # Pillow warns, then refuses, past its own limit: refuse at once, whatever the limit.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                if image.width * image.height > MAX_PIXELS:
                    raise MediaError(
                        f"the image is {image.width}x{image.height} pixels, "
                        f"over the limit of {MAX_PIXELS // 1_000_000} megapixels for a thumbnail"
                    )
                image.draft("RGB", box)  # JPEG: decode at a fraction of the size
                picture = ImageOps.exif_transpose(image)
                picture = picture.convert("RGBA" if _has_alpha(picture) else "RGB")
                picture.thumbnail(box)
                picture.save(target, format="WEBP", quality=WEBP_QUALITY, method=WEBP_METHOD)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise MediaError(f"the image is too large for a thumbnail ({exc})") from None
    except UnidentifiedImageError:
        raise MediaError("the content is not an image this node can read") from None
    except MediaError:
        raise
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or malformed image data
        reason = exc.strerror if isinstance(exc, OSError) and exc.filename else str(exc)  # no paths
        raise MediaError(f"the image cannot be read: {reason}") from None


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)


def main(argv: list[str]) -> int:
    """``SOURCE TARGET MEDIA_TYPE TIMEOUT_S``: 0 when made, else FAILED or TIMED_OUT with the
    reason on stderr."""
    source, target, media_type, timeout_s = argv
    try:
        make_thumbnail(Path(source), Path(target), media_type, float(timeout_s))
    except MediaError as exc:
        print(str(exc).replace("\n", " "), file=sys.stderr)
        return TIMED_OUT if isinstance(exc, TookTooLong) else FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
