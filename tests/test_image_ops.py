"""RESIZE, LAYER and BLEND against direct numpy (and, for resampling, Pillow) references."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from PIL import Image

from node.executor.nodetypes import NODE_TYPES
from node.pixels.image_ops import blend, layer, resize

RNG = np.random.default_rng(5)
BASE = RNG.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
OTHER = RNG.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)


def config(type_name: str, **given: Any) -> dict[str, Any]:
    return NODE_TYPES[type_name].normalize("n", given)


def rounded(values: np.ndarray) -> np.ndarray:
    result: np.ndarray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return result


def pillow_resize(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    image = Image.fromarray(pixels, mode="RGB").resize((width, height), Image.Resampling.LANCZOS)
    return np.asarray(image)


@pytest.mark.parametrize(
    ("given", "shape"),
    [
        ({"width": 15}, (10, 15)),
        ({"height": 40}, (40, 60)),
        ({"width": 12, "height": 12, "fit": "stretch"}, (12, 12)),
        ({"width": 12, "height": 12, "fit": "contain"}, (8, 12)),
        ({"width": 12, "height": 12, "fit": "cover"}, (12, 12)),
    ],
)
def test_resize_sizes(given: dict[str, Any], shape: tuple[int, int]) -> None:
    """Width or height alone keep the aspect ratio; contain fits inside, cover fills and crops."""
    assert resize(BASE, config("RESIZE", **given)).shape[:2] == shape


def test_resize_pixels_are_pillows_lanczos() -> None:
    np.testing.assert_array_equal(resize(BASE, config("RESIZE", width=15)), pillow_resize(BASE, 15, 10))


def test_cover_crops_the_centre() -> None:
    scaled = pillow_resize(BASE, 18, 12)
    np.testing.assert_array_equal(
        resize(BASE, config("RESIZE", width=12, height=12, fit="cover")), scaled[:, 3:15]
    )


def test_layer_places_and_mixes() -> None:
    """The overlay lands at (x, y), partly off the edge, mixed by opacity; the rest is the base."""
    small = OTHER[:8, :10]
    result = layer(BASE, small, config("LAYER", x=25, y=-3, opacity=0.25))
    expected = BASE.astype(np.float64)
    region = expected[0:5, 25:30]
    expected[0:5, 25:30] = region + 0.25 * (small[3:8, 0:5] - region)
    np.testing.assert_array_equal(result, rounded(expected))


A = BASE.astype(np.float64) / 255
B = OTHER.astype(np.float64) / 255
BLENDS = {
    "multiply": A * B,
    "screen": 1 - (1 - A) * (1 - B),
    "overlay": np.where(A < 0.5, 2 * A * B, 1 - 2 * (1 - A) * (1 - B)),
    "add": np.minimum(1, A + B),
    "subtract": np.maximum(0, A - B),
    "average": (A + B) / 2,
    "difference": np.abs(A - B),
    "lighten": np.maximum(A, B),
    "darken": np.minimum(A, B),
}


@pytest.mark.parametrize("mode", sorted(BLENDS))
def test_blend_modes(mode: str) -> None:
    """Each mode's formula on 0-1 channels, then base + opacity * (blended - base)."""
    result = blend(BASE, OTHER, config("BLEND", mode=mode, opacity=0.8))
    np.testing.assert_array_equal(result, rounded(255 * (A + 0.8 * (BLENDS[mode] - A))))


def test_blend_resizes_the_second_input() -> None:
    big = np.repeat(np.repeat(OTHER, 2, axis=0), 2, axis=1)
    result = blend(BASE, big, config("BLEND", mode="average"))
    averaged = (A + pillow_resize(big, 30, 20).astype(np.float64) / 255) / 2
    np.testing.assert_array_equal(result, rounded(255 * (A + 1.0 * (averaged - A))))
