"""A step worker: ``python -m node.executor.worker``, one job at a time over stdin/stdout.

The scheduler keeps a few of these running, each in its own process group, so a step can be
killed (cancel, timeout) with everything it started, and numpy and Pillow are imported once
per worker rather than once per step. A job is one JSON line:
``{"job": ID, "type": TYPE, "config": {...}, "inputs": [PATH, ...], "media_types": [...],
"output": PATH}``; a config with ``encode`` is a video or audio step (``node.media.render``). The answer
is one JSON line ``{"job": ID, "ok": true, "media_type": ...}`` or ``{"job": ID, "ok": false,
"error": "..."}``. Output is written to a temporary name and renamed, so it appears whole.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from PIL import UnidentifiedImageError

from node.media.render import render, write_atomically
from node.pixels import image_ops
from node.pixels.effects import EFFECTS
from node.pixels.imaging import Array, png_bytes, read_image

PNG = "image/png"


def compute(job: dict[str, Any]) -> str:
    """Run one job; returns the output's media type. Raises on bad input or unsupported work."""
    config = job["config"]
    if "encode" in config:
        return write_atomically(lambda path: render(job, path), Path(job["output"]))
    images = [_image(Path(path), index) for index, path in enumerate(job["inputs"])]
    kind = job["type"]
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


def _image(path: Path, index: int) -> Array:
    if path.stat().st_size == 0:
        raise ValueError(f"input {index + 1} is empty (0 bytes)")
    try:
        return read_image(path)
    except UnidentifiedImageError:
        raise ValueError(f"input {index + 1} is not an image this node reads") from None


def main() -> None:
    for line in sys.stdin:
        job = json.loads(line)
        try:
            answer = {"job": job.get("job"), "ok": True, "media_type": compute(job)}
        except Exception as exc:  # report every failure of a job; the worker lives on
            answer = {"job": job.get("job"), "ok": False, "error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
