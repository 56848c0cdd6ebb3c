"""A step worker: ``python -m node.executor.worker``, one job at a time over stdin/stdout.

The scheduler keeps a few of these running, each in its own process group, so a step can be
killed (cancel, timeout) with everything it started, and numpy and Pillow are imported once
per worker rather than once per step. A job is one JSON line:
``{"job": ID, "type": TYPE, "config": {...}, "inputs": [PATH, ...], "media_types": [...],
"output": PATH}``; a config with ``encode`` is a video or audio step (``node.media.render``). The answer
is one JSON line ``{"job": ID, "ok": true, "media_type": ...}`` or ``{"job": ID, "ok": false,
"error": "..."}`` (with ``"code": "out_of_memory"`` when the work did not fit the worker's
memory limit, ``node.memory``), after any number of ``{"job": ID, "progress": {...}}`` lines: a
long video or audio step's frames done, percent and ETA. Output is written to a temporary name
and renamed, so it appears whole.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from PIL import UnidentifiedImageError

from node.media.analysis import analyze
from node.media.parts import JOIN, PART, SOUND, render_part_step
from node.media.progress import Report
from node.media.render import render, write_atomically
from node.media.step_log import collecting, tail
from node.memory import OutOfMemory, ensure_fits, ran_out
from node.pixels import image_ops
from node.pixels.effects import EFFECTS
from node.pixels.footprint import Size, image_step_bytes
from node.pixels.imaging import Array, image_size, png_bytes, read_image

PNG = "image/png"
PART_STEPS = (PART, SOUND, JOIN)
OUT_OF_MEMORY = "out_of_memory"  # the answer's code for work that did not fit the worker's limit


def compute(job: dict[str, Any], report: Report | None = None) -> str:
    """Run one job; returns the output's media type. Raises on bad input or unsupported work.
    ``report`` hears a long video or audio step's progress, about once a second."""
    config = job["config"]
    if job["type"] == "ANALYZE":
        source = Path(job["inputs"][0])
        return write_atomically(lambda path: analyze(source, config, path), Path(job["output"]))
    if job["type"] in PART_STEPS:
        return write_atomically(lambda path: render_part_step(job, path, report), Path(job["output"]))
    if "encode" in config:
        return write_atomically(lambda path: render(job, path, report), Path(job["output"]))
    kind = job["type"]
    paths = [Path(path) for path in job["inputs"]]
    sizes = [_size(path, index) for index, path in enumerate(paths)]
    ensure_fits(image_step_bytes(kind, config, sizes), _what(kind, config, sizes))
    images = [_image(path, index) for index, path in enumerate(paths)]
    result: Array
    if kind == "EFFECT":
        effect = EFFECTS[config["effect"]]
        if effect.apply is None:
            raise ValueError(f"{effect.name} is zero-copy and never runs in a worker")
        result = effect.apply(images[0], config["params"])
    elif kind == "RESIZE":
        result = image_ops.resize(images[0], config)
    elif kind == "LAYER":
        result = image_ops.layer(images[0], images[1], config)
    elif kind == "BLEND":
        result = image_ops.blend(images[0], images[1], config)
    else:
        raise ValueError(f"{kind} on images is not supported by this node yet")
    data = png_bytes(result)

    def write_png(path: Path) -> str:
        path.write_bytes(data)
        return PNG

    return write_atomically(write_png, Path(job["output"]))


def _size(path: Path, index: int) -> Size:
    """The input's (width, height) from its header: what memory it will take is known before
    anything is decoded."""
    if path.stat().st_size == 0:
        raise ValueError(f"input {index + 1} is empty (0 bytes)")
    try:
        return image_size(path)
    except UnidentifiedImageError:
        raise ValueError(f"input {index + 1} is not an image this node reads") from None


def _image(path: Path, index: int) -> Array:
    try:
        return read_image(path)
    except UnidentifiedImageError:
        raise ValueError(f"input {index + 1} is not an image this node reads") from None


def _what(kind: str, config: dict[str, Any], sizes: list[Size]) -> str:
    """``blur on 9990x9990 pixels``: the step, for a message about its memory."""
    name = config["effect"] if kind == "EFFECT" else kind
    return f"{name} on " + " and ".join(f"{width}x{height}" for width, height in sizes) + " pixels"


def answer(job: dict[str, Any]) -> dict[str, Any]:
    """The answer to one job, with the tail of its tools' log when they said anything
    (``node.media.step_log``)."""
    with collecting() as lines:
        reply = _answer(job)
    return {**reply, "log": tail(lines)} if lines else reply


def _answer(job: dict[str, Any]) -> dict[str, Any]:
    """Its output's media type, or its error; a failed allocation, or work refused because it
    would not fit, is ``code: out_of_memory``."""
    try:
        return {"job": job.get("job"), "ok": True, "media_type": compute(job, _reporter(job))}
    except OutOfMemory as exc:  # refused before it started, or ffmpeg could not allocate
        return {"job": job.get("job"), "ok": False, "code": OUT_OF_MEMORY, "error": str(exc)}
    except MemoryError:  # the kernel's limit refused an allocation halfway
        error = ran_out(_job_name(job))
        return {"job": job.get("job"), "ok": False, "code": OUT_OF_MEMORY, "error": error}
    except ValueError as exc:  # the node's own errors (MediaError too): written for the artist
        return {"job": job.get("job"), "ok": False, "error": str(exc)}
    except Exception as exc:  # report every failure of a job; the worker lives on
        return {
            "job": job.get("job"),
            "ok": False,
            "error": f"unexpected error ({type(exc).__name__}): {exc}",
        }


def _reporter(job: dict[str, Any]) -> Report:
    """Progress as lines before the answer: ``{"job": ID, "progress": {...}}``."""

    def report(fields: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps({"job": job.get("job"), "progress": fields}) + "\n")
        sys.stdout.flush()

    return report


def _job_name(job: dict[str, Any]) -> str:
    config = job.get("config", {})
    return f"effect {config['effect']}" if "effect" in config else f"the {job.get('type', 'step')} step"


def main() -> None:
    # The worker leads its own process group (the pool starts it so) and dies with the node
    # (a parent-death signal, SIGTERM); what it started (ffmpeg) is not told: take the whole
    # group down with it, or a killed node's ffmpeg would finish its part for nobody.
    die_with_group()
    for line in sys.stdin:
        sys.stdout.write(json.dumps(answer(json.loads(line))) + "\n")
        sys.stdout.flush()


def die_with_group() -> None:
    """On SIGTERM, end this process's group (the worker and what it started), if it leads one."""
    signal.signal(signal.SIGTERM, _end_group)


def _end_group(signum: int, frame: object) -> None:
    if os.getpgrp() == os.getpid():  # never a group the worker does not lead
        os.killpg(os.getpgrp(), signal.SIGKILL)
    sys.exit(128 + signum)


if __name__ == "__main__":
    main()
