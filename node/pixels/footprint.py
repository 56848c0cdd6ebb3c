"""How much memory an image step needs, known from its inputs' headers before decoding them.

A step worker checks this against what its memory limit leaves (``node.memory.ensure_fits``),
so an image too large for it is refused in a moment with both figures, not after the kernel
stops it halfway. The figures are per pixel and were measured (peak data mapped, on random
2000 x 1500 images); tests/test_worker_memory.py checks that each estimate covers what the work
really uses, and is not many times more.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from node.pixels.effects import EFFECTS
from node.pixels.image_ops import resize_sizes

Size = tuple[int, int]  # width, height

DECODE_PER_PIXEL = 16  # Pillow's decoded image (up to 4 bytes a pixel), its RGB copy, the array
RESIZED_PER_PIXEL = 16  # per output pixel of Pillow's resampling: its image and the array
LAYER_BASE_PER_PIXEL = 96  # the base in float64, the mix and its rounding
LAYER_OVERLAY_PER_PIXEL = 32  # the placed overlay's float64 patch, and its scaled copy
BLEND_PER_PIXEL = 150  # both images as float64 fractions, the blend and the mix's temporaries
PADDED_PER_PIXEL = 24  # a Gaussian's padded float64 copy, per pixel of the padded size
RAW_FRAME_PER_PIXEL = 16  # a video frame read from ffmpeg's pipe, its array, the bytes written
FIXED = 32 * 1024**2  # PNG encoding's buffers and the rest that does not grow with the image


def image_step_bytes(kind: str, config: Mapping[str, Any], sizes: Sequence[Size]) -> int:
    """The most memory an image step of ``kind`` with ``config`` holds at once, for inputs of
    ``sizes`` (width, height), beyond what the worker holds before it starts."""
    decoded = sum(width * height for width, height in sizes) * DECODE_PER_PIXEL
    return FIXED + decoded + _working(kind, config, sizes)


def video_frame_bytes(effect_name: str, params: Mapping[str, Any], width: int, height: int) -> int:
    """The most memory an image effect holds while applied to video frame by frame."""
    return FIXED + width * height * RAW_FRAME_PER_PIXEL + effect_bytes(effect_name, params, width, height)


def effect_bytes(effect_name: str, params: Mapping[str, Any], width: int, height: int) -> int:
    """What an effect's own work holds: its measured bytes per pixel, and for a Gaussian the
    image padded along one axis at a time by the kernel's radius (a thin image under a wide
    blur pads to many times its size)."""
    reach = _blur_reach(params)
    padded = max((width + 2 * reach) * height, width * (height + 2 * reach)) if reach else 0
    return width * height * EFFECTS[effect_name].memory_per_pixel + padded * PADDED_PER_PIXEL


def _blur_reach(params: Mapping[str, Any]) -> int:
    """The widest Gaussian kernel's radius, ceil(3 sigma) (k sigma for the second of ``dog``)."""
    if "sigma" not in params:
        return 0
    sigma = float(params["sigma"]) * max(1.0, float(params.get("k", 1.0)))
    return math.ceil(3 * sigma)


def _working(kind: str, config: Mapping[str, Any], sizes: Sequence[Size]) -> int:
    (width, height), pixels = sizes[0], sizes[0][0] * sizes[0][1]
    if kind == "EFFECT":
        return effect_bytes(config["effect"], config["params"], width, height)
    if kind == "RESIZE":
        scaled_w, scaled_h, _ = resize_sizes(width, height, config)
        return scaled_w * scaled_h * RESIZED_PER_PIXEL
    if kind == "LAYER":
        over_w, over_h = sizes[1]
        scale = float(config.get("scale", 1.0))
        overlay = round(over_w * scale) * round(over_h * scale)
        return pixels * LAYER_BASE_PER_PIXEL + overlay * LAYER_OVERLAY_PER_PIXEL
    if kind == "BLEND":
        return pixels * BLEND_PER_PIXEL + pixels * RESIZED_PER_PIXEL  # the other, resized to the base
    return 0
