"""The effect registry: named, versioned image effects with typed parameters.

An effect maps an RGB uint8 array to another (see ``imaging``); ``identity`` maps nothing: its
output is its input, byte for byte, same CID. An effect's ``hash`` (what a recipe's
``registry.effects.NAME.hash`` must equal) is the SHA3-256 of the canonical JSON of its name and
version, so it changes exactly when the effect's output may change. Raise ``version`` whenever
an effect's code changes what it produces.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from node.canonical import canonical_id
from node.pixels.imaging import Array, gaussian_blur, luma, to_uint8
from node.pixels.params import Param

Apply = Callable[[Array, Mapping[str, Any]], Array]

SEPIA = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]])


@dataclass(frozen=True)
class Effect:
    """A named, versioned transformation of one image."""

    name: str
    version: str
    description: str
    params: tuple[Param, ...]
    apply: Apply | None  # None: zero-copy, the output is the input
    # The most memory ``apply`` holds at once, per pixel of its input, its input and output
    # arrays included (float64 working copies: 24 bytes a pixel each). Measured, with a margin;
    # tests/test_worker_memory.py checks that the estimate covers what each effect uses.
    memory_per_pixel: int

    @property
    def hash(self) -> str:
        return canonical_id({"name": self.name, "version": self.version})

    @property
    def zero_copy(self) -> bool:
        return self.apply is None

    def schema(self) -> dict[str, Any]:
        """What ``GET /effects`` publishes: name, version, hash and a JSON Schema of the params."""
        return {
            "name": self.name,
            "version": self.version,
            "hash": self.hash,
            "description": self.description,
            "params": {
                "type": "object",
                "properties": {param.name: param.schema() for param in self.params},
                "additionalProperties": False,
            },
        }


def _grayscale(pixels: Array, params: Mapping[str, Any]) -> Array:
    gray = to_uint8(luma(pixels))
    return np.repeat(gray[..., None], 3, axis=2)


def _invert(pixels: Array, params: Mapping[str, Any]) -> Array:
    return 255 - pixels


def _blur(pixels: Array, params: Mapping[str, Any]) -> Array:
    return to_uint8(gaussian_blur(pixels.astype(np.float64), params["sigma"]))


def _sharpen(pixels: Array, params: Mapping[str, Any]) -> Array:
    original = pixels.astype(np.float64)
    blurred = gaussian_blur(original, params["sigma"])
    return to_uint8(original + params["amount"] * (original - blurred))


def _brightness(pixels: Array, params: Mapping[str, Any]) -> Array:
    return to_uint8(pixels.astype(np.float64) * params["factor"])


def _contrast(pixels: Array, params: Mapping[str, Any]) -> Array:
    mean = float(luma(pixels).mean())
    return to_uint8(mean + params["factor"] * (pixels.astype(np.float64) - mean))


def _pixelate(pixels: Array, params: Mapping[str, Any]) -> Array:
    block = params["block"]
    height, width = pixels.shape[:2]
    result = np.empty_like(pixels)
    for top in range(0, height, block):
        for left in range(0, width, block):
            tile = pixels[top : top + block, left : left + block].astype(np.float64)
            result[top : top + block, left : left + block] = to_uint8(tile.mean(axis=(0, 1)))
    return result


def _sepia(pixels: Array, params: Mapping[str, Any]) -> Array:
    return to_uint8(pixels.astype(np.float64) @ SEPIA.T)


def _dog(pixels: Array, params: Mapping[str, Any]) -> Array:
    lum = luma(pixels)
    difference = gaussian_blur(lum, params["sigma"]) - gaussian_blur(lum, params["sigma"] * params["k"])
    edges = to_uint8(128 + params["gain"] * difference)
    return np.repeat(edges[..., None], 3, axis=2)


def _wait(pixels: Array, params: Mapping[str, Any]) -> Array:
    time.sleep(params["seconds"])  # in a step worker, never the event loop
    return pixels.copy()


def _sigma(default: float, maximum: float = 50.0) -> Param:
    return Param("sigma", "float", default, "Gaussian standard deviation", 0.1, maximum, unit="px")


def _factor(description: str) -> Param:
    return Param("factor", "float", 1.2, description, 0.0, 4.0)


EFFECTS: dict[str, Effect] = {
    effect.name: effect
    for effect in (
        Effect(
            "identity",
            "1",
            "The input, unchanged: same bytes, same CID (zero-copy).",
            (),
            None,
            memory_per_pixel=0,
        ),
        Effect("invert", "1", "Each channel v becomes 255 - v.", (), _invert, memory_per_pixel=8),
        Effect(
            "grayscale",
            "1",
            "Rec. 601 luma Y = 0.299 R + 0.587 G + 0.114 B in all channels.",
            (),
            _grayscale,
            memory_per_pixel=40,
        ),
        Effect(
            "blur",
            "1",
            "Separable Gaussian blur, borders mirrored.",
            (_sigma(2.0),),
            _blur,
            memory_per_pixel=136,
        ),
        Effect(
            "sharpen",
            "1",
            "Unsharp mask: v + amount * (v - gaussian(v, sigma)).",
            (_sigma(1.0, 20.0), Param("amount", "float", 1.0, "strength of the mask", 0.0, 5.0)),
            _sharpen,
            memory_per_pixel=136,
        ),
        Effect(
            "brightness",
            "1",
            "Each channel v becomes v * factor.",
            (_factor("brightness multiplier"),),
            _brightness,
            memory_per_pixel=72,
        ),
        Effect(
            "contrast",
            "1",
            "Each channel v becomes m + factor * (v - m), m the image's mean luma.",
            (_factor("contrast multiplier"),),
            _contrast,
            memory_per_pixel=80,
        ),
        Effect(
            "pixelate",
            "1",
            "Each block x block tile (from the top left) becomes its mean colour.",
            (Param("block", "int", 8, "tile size", 2, 256, unit="px"),),
            _pixelate,
            memory_per_pixel=8,
        ),
        Effect(
            "sepia", "1", "The classic sepia matrix applied to (R, G, B).", (), _sepia, memory_per_pixel=80
        ),
        Effect(
            "wait",
            "1",
            "The input unchanged, after holding each image or frame for `seconds`: slow work "
            "without load, for benchmarks and for trying cooperation between nodes.",
            (Param("seconds", "float", 0.2, "how long to hold", 0.0, 10.0, unit="s"),),
            _wait,
            memory_per_pixel=8,
        ),
        Effect(
            "dog",
            "1",
            "Difference of Gaussians on luma L: 128 + gain * (gaussian(L, sigma) - gaussian(L, k * sigma)), "
            "in all channels.",
            (
                _sigma(1.0, 20.0),
                Param("k", "float", 1.6, "ratio of the second sigma to the first", 1.01, 10.0),
                Param("gain", "float", 10.0, "contrast of the edges", 0.1, 100.0),
            ),
            _dog,
            memory_per_pixel=48,
        ),
    )
}
