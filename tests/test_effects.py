"""Image effects against independent numpy references, and their parameter schemas."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from node.pixels.effects import EFFECTS, SEPIA
from node.pixels.imaging import png_bytes
from node.pixels.params import normalize_params

RNG = np.random.default_rng(7)
IMAGE = RNG.integers(0, 256, size=(11, 13, 3), dtype=np.uint8)


def rounded(values: np.ndarray) -> np.ndarray:
    result: np.ndarray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return result


def reference_blur(channel: np.ndarray, sigma: float) -> np.ndarray:
    """Direct 2-D convolution with the Gaussian's outer product; mirrored ('symmetric') borders."""
    radius = max(1, math.ceil(3 * sigma))
    weights = np.array([math.exp(-(i * i) / (2 * sigma * sigma)) for i in range(-radius, radius + 1)])
    weights /= weights.sum()
    height, width = channel.shape

    def mirror(index: int, size: int) -> int:
        while index < 0 or index >= size:
            index = -index - 1 if index < 0 else 2 * size - index - 1
        return index

    result = np.zeros((height, width))
    for y in range(height):
        for x in range(width):
            total = 0.0
            for dy in range(-radius, radius + 1):
                for dx in range(-radius, radius + 1):
                    pixel = channel[mirror(y + dy, height), mirror(x + dx, width)]
                    total += weights[dy + radius] * weights[dx + radius] * pixel
            result[y, x] = total
    return result


def luma(image: np.ndarray) -> np.ndarray:
    rgb = image.astype(np.float64)
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


def gray3(values: np.ndarray) -> np.ndarray:
    return np.stack([rounded(values)] * 3, axis=2)


def ref_pixelate(image: np.ndarray, block: int) -> np.ndarray:
    out = image.copy()
    for top in range(0, image.shape[0], block):
        for left in range(0, image.shape[1], block):
            tile = image[top : top + block, left : left + block].astype(np.float64)
            out[top : top + block, left : left + block] = rounded(tile.mean(axis=(0, 1)))
    return out


def ref_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return np.stack([reference_blur(image[..., c].astype(np.float64), sigma) for c in range(3)], axis=2)


REFERENCES: dict[str, tuple[dict[str, Any], Callable[[np.ndarray, dict[str, Any]], np.ndarray]]] = {
    "invert": ({}, lambda im, p: 255 - im),
    "grayscale": ({}, lambda im, p: gray3(luma(im))),
    "brightness": ({"factor": 1.7}, lambda im, p: rounded(im * 1.7)),
    "contrast": ({"factor": 0.6}, lambda im, p: rounded(luma(im).mean() + 0.6 * (im - luma(im).mean()))),
    "sepia": ({}, lambda im, p: rounded(np.einsum("ij,hwj->hwi", SEPIA, im.astype(np.float64)))),
    "wait": ({"seconds": 0.0}, lambda im, p: im),
    "pixelate": ({"block": 4}, lambda im, p: ref_pixelate(im, 4)),
    "blur": ({"sigma": 1.3}, lambda im, p: rounded(ref_blur(im, 1.3))),
    "sharpen": ({"sigma": 0.8, "amount": 1.5}, lambda im, p: rounded(im + 1.5 * (im - ref_blur(im, 0.8)))),
    "dog": (
        {"sigma": 0.9, "k": 1.6, "gain": 12.0},
        lambda im, p: gray3(
            128 + 12.0 * (reference_blur(luma(im), 0.9) - reference_blur(luma(im), 0.9 * 1.6))
        ),
    ),
}


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_effect_matches_numpy_reference(name: str) -> None:
    """Each effect equals a direct numpy formulation of its documented formula, pixel for pixel."""
    given, reference = REFERENCES[name]
    effect = EFFECTS[name]
    params, problems = normalize_params(effect.params, given)
    assert problems == {}
    assert effect.apply is not None
    result = effect.apply(IMAGE.copy(), params)
    assert result.dtype == np.uint8 and result.shape == IMAGE.shape
    np.testing.assert_array_equal(result, reference(IMAGE, params))


def test_every_effect_but_identity_has_a_reference() -> None:
    assert set(EFFECTS) - set(REFERENCES) == {"identity"}


def test_identity_is_zero_copy() -> None:
    """identity computes nothing: the scheduler hands its input's CID on as its output."""
    assert EFFECTS["identity"].zero_copy
    assert EFFECTS["identity"].apply is None
    assert not any(effect.zero_copy for name, effect in EFFECTS.items() if name != "identity")


def test_effect_output_png_is_deterministic() -> None:
    """The same pixels always encode to the same PNG bytes (no time or text chunks)."""
    pixels = IMAGE.copy()
    assert png_bytes(pixels) == png_bytes(pixels.copy())
    assert b"tIME" not in png_bytes(pixels)


def test_schemas_publish_types_bounds_and_defaults() -> None:
    """Every parameter appears in its effect's JSON Schema with type, default and bounds."""
    for effect in EFFECTS.values():
        schema = effect.schema()
        assert schema["hash"] == effect.hash
        properties = schema["params"]["properties"]
        assert set(properties) == {param.name for param in effect.params}
        for param in effect.params:
            assert properties[param.name]["default"] == param.default
            if param.kind in ("float", "int"):
                assert properties[param.name]["minimum"] <= param.default <= properties[param.name]["maximum"]


def test_effect_hash_changes_with_version() -> None:
    """The registry hash names name and version: a new version is a different effect."""
    dog = EFFECTS["dog"]
    assert replace(dog, version="2").hash != dog.hash
    assert len({effect.hash for effect in EFFECTS.values()}) == len(EFFECTS)
