"""Image arrays: reading, writing byte-deterministic PNG, and the numeric kernels effects share.

Images are ``uint8`` arrays of shape (height, width, 3), RGB; alpha is dropped on reading.
Arithmetic runs in float64 and is rounded half to even (``numpy.rint``) and clipped to 0-255,
so the same input gives the same bytes wherever numpy is the same version.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

Array = NDArray[np.uint8]
Float = NDArray[np.float64]
PNG_COMPRESS_LEVEL = 6
MAX_PIXELS = 100_000_000  # refuse decompression bombs before decoding them


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the image's header, nothing decoded; ValueError over MAX_PIXELS."""
    with Image.open(path) as image:
        _check_pixels(image)
        return image.width, image.height


def read_image(path: Path) -> Array:
    """An RGB uint8 array from any image Pillow reads."""
    with Image.open(path) as image:
        _check_pixels(image)
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def _check_pixels(image: Image.Image) -> None:
    if image.width * image.height > MAX_PIXELS:
        raise ValueError(f"image of {image.width}x{image.height} pixels is over the limit of {MAX_PIXELS}")


def png_bytes(pixels: Array) -> bytes:
    """PNG bytes of an RGB array: no time or text chunks, fixed compression, so deterministic."""
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def to_uint8(values: Float) -> Array:
    """Round half to even and clip to 0-255."""
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def luma(pixels: Array | Float) -> Float:
    """Rec. 601 luma, Y = 0.299 R + 0.587 G + 0.114 B, as float64 (height, width)."""
    rgb = pixels.astype(np.float64)
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def gaussian_kernel(sigma: float) -> Float:
    """Normalized 1-D Gaussian weights exp(-i^2 / 2 sigma^2) for i in [-r, r], r = ceil(3 sigma)."""
    radius = max(1, math.ceil(3 * sigma))
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    weights: Float = np.exp(-(offsets**2) / (2 * sigma**2))
    normalized: Float = weights / weights.sum()
    return normalized


def gaussian_blur(values: Float, sigma: float) -> Float:
    """Separable Gaussian blur over the first two axes, borders mirrored (numpy 'symmetric')."""
    kernel = gaussian_kernel(sigma)
    radius = len(kernel) // 2
    result = values.astype(np.float64)
    for axis in (0, 1):
        pad = [(0, 0)] * result.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(result, pad, mode="symmetric")
        length = result.shape[axis]
        accumulated = np.zeros_like(result)
        window: list[slice] = [slice(None)] * result.ndim
        for tap, weight in enumerate(kernel):
            window[axis] = slice(tap, tap + length)
            accumulated += weight * padded[tuple(window)]
        result = accumulated
    return result
