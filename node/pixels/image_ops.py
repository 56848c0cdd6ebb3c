"""The image node types: RESIZE, LAYER and BLEND (pixels in, pixels out; see ``node.executor.nodetypes``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from PIL import Image

from node.pixels.imaging import Array, to_uint8

FILTERS = {
    "lanczos": Image.Resampling.LANCZOS,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}


def resize(pixels: Array, config: Mapping[str, Any]) -> Array:
    """Scale to width x height: 0 in one keeps the aspect ratio; with both, ``fit`` decides."""
    height, width = pixels.shape[:2]
    scaled_w, scaled_h, crop = resize_sizes(width, height, config)
    scaled = _scaled(pixels, scaled_w, scaled_h, config["filter"])
    return _center_crop(scaled, *crop) if crop else scaled


def resize_sizes(
    width: int, height: int, config: Mapping[str, Any]
) -> tuple[int, int, tuple[int, int] | None]:
    """(scaled width, scaled height, centre crop to (width, height) or None) for RESIZE of a
    ``width`` x ``height`` picture; shared by images and video so both get the same sizes."""
    target_w, target_h = config["width"], config["height"]
    if not target_w and not target_h:
        raise ValueError("RESIZE needs a width or a height")
    if not target_w:
        return max(1, round(width * target_h / height)), target_h, None
    if not target_h:
        return target_w, max(1, round(height * target_w / width)), None
    if config["fit"] == "stretch":
        return target_w, target_h, None
    scale = (min if config["fit"] == "contain" else max)(target_w / width, target_h / height)
    scaled = max(1, round(width * scale)), max(1, round(height * scale))
    return (*scaled, None) if config["fit"] == "contain" else (*scaled, (target_w, target_h))


def _scaled(pixels: Array, width: int, height: int, filter_name: str) -> Array:
    image = Image.fromarray(pixels, mode="RGB").resize((width, height), FILTERS[filter_name])
    return np.asarray(image, dtype=np.uint8).copy()


def _center_crop(pixels: Array, width: int, height: int) -> Array:
    top = (pixels.shape[0] - height) // 2
    left = (pixels.shape[1] - width) // 2
    return pixels[top : top + height, left : left + width].copy()


def layer(base: Array, overlay: Array, config: Mapping[str, Any]) -> Array:
    """``overlay`` scaled by ``scale``, placed with its top left at (x, y) on ``base``, mixed
    with ``opacity``; parts outside the base are cut off. The result has the base's size."""
    if config["scale"] != 1.0:
        height, width = overlay.shape[:2]
        overlay = _scaled(
            overlay,
            max(1, round(width * config["scale"])),
            max(1, round(height * config["scale"])),
            "lanczos",
        )
    result = base.astype(np.float64)
    x, y = config["x"], config["y"]
    top, left = max(0, y), max(0, x)
    bottom = min(base.shape[0], y + overlay.shape[0])
    right = min(base.shape[1], x + overlay.shape[1])
    if top < bottom and left < right:
        patch = overlay[top - y : bottom - y, left - x : right - x].astype(np.float64)
        region = result[top:bottom, left:right]
        result[top:bottom, left:right] = region + config["opacity"] * (patch - region)
    return to_uint8(result)


def blend(base: Array, other: Array, config: Mapping[str, Any]) -> Array:
    """``other`` (resized to the base's size) blended into ``base`` by ``mode``, then mixed with
    ``opacity``: result = base + opacity * (blended - base). Channels as fractions 0-1."""
    if other.shape != base.shape:
        other = _scaled(other, base.shape[1], base.shape[0], "lanczos")
    a = base.astype(np.float64) / 255
    b = other.astype(np.float64) / 255
    blended = BLEND_MODES[config["mode"]](a, b)
    return to_uint8(255 * (a + config["opacity"] * (blended - a)))


BLEND_MODES: dict[str, Any] = {
    "multiply": lambda a, b: a * b,
    "screen": lambda a, b: 1 - (1 - a) * (1 - b),
    "overlay": lambda a, b: np.where(a < 0.5, 2 * a * b, 1 - 2 * (1 - a) * (1 - b)),
    "add": lambda a, b: np.minimum(1.0, a + b),
    "subtract": lambda a, b: np.maximum(0.0, a - b),
    "average": lambda a, b: (a + b) / 2,
    "difference": lambda a, b: np.abs(a - b),
    "lighten": np.maximum,
    "darken": np.minimum,
}
