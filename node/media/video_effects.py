"""The image effects on video, frame by frame, as ffmpeg filters on planar RGB.

Each effect here is the ffmpeg rendering of the image effect of the same name (``node.pixels
.effects``): the same formula, on 8-bit RGB frames. Where ffmpeg's filter approximates (``gblur``
is a recursive Gaussian, luma is rounded to 8 bits before ``dog``'s blurs) the frames differ
from the image effect by a level or two; the tests bound that difference. An effect with no
filter here (``contrast``, whose mean luma changes per frame) runs its numpy function on raw
frames piped through (``node.media.framepipe``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from node.media.graph import Graph
from node.pixels.effects import SEPIA

# Filters a chain: (graph, input label, params) -> output label.
VideoEffect = Callable[[Graph, str, Mapping[str, Any]], str]

LUMA = (0.299, 0.587, 0.114)
BOUND_NAME = "@bound"  # the filter instance per-frame commands address (one per step)
# Effect parameters whose filter takes per-frame values by command (``sendcmd``): parameter ->
# (its filter, the commands that set it; gblur's vertical sigma is its own). A binding on any other
# parameter runs the effect on raw frames.
COMMANDS: dict[str, dict[str, tuple[str, ...]]] = {"blur": {"sigma": ("gblur", "sigma", "sigmaV")}}
GBLUR_STEPS = 3  # more steps: closer to a true Gaussian, slower


def _mixer(matrix: tuple[tuple[float, ...], ...]) -> str:
    names = ("r", "g", "b")
    return "colorchannelmixer=" + ":".join(
        f"{out}{inp}={matrix[row][col]:.6g}" for row, out in enumerate(names) for col, inp in enumerate(names)
    )


def _each_plane(expression: str) -> str:
    return f"c0='{expression}':c1='{expression}':c2='{expression}'"


def _gblur(sigma: float) -> str:
    return f"gblur=sigma={sigma:.6g}:steps={GBLUR_STEPS}"


def _invert(graph: Graph, source: str, params: Mapping[str, Any]) -> str:
    return graph.filter(source, "negate")


def _grayscale(graph: Graph, source: str, params: Mapping[str, Any]) -> str:
    return graph.filter(source, _mixer((LUMA, LUMA, LUMA)))


def _sepia(graph: Graph, source: str, params: Mapping[str, Any]) -> str:
    return graph.filter(source, _mixer(tuple(tuple(float(v) for v in row) for row in SEPIA)))


def _blur(graph: Graph, source: str, params: Mapping[str, Any]) -> str:
    if params.get("sendcmd"):  # sigma bound to an analysis: per-frame values by command
        named = f"gblur{BOUND_NAME}=sigma={params['sigma']:.6g}:steps={GBLUR_STEPS}"
        return graph.filter(source, f"sendcmd=f={params['sendcmd']},{named}")
    return graph.filter(source, _gblur(params["sigma"]))


def _brightness(graph: Graph, source: str, params: Mapping[str, Any]) -> str:
    return graph.filter(source, "lut=" + _each_plane(f"clip(floor(val*{params['factor']:.6g}+0.5),0,255)"))


def _pixelate(graph: Graph, source: str, params: Mapping[str, Any]) -> str:
    return graph.filter(source, f"pixelize=w={params['block']}:h={params['block']}:m=avg")


def _difference(graph: Graph, source: str, first: str, second: str, expression: str) -> str:
    """``expression`` of x = ``first``(frame) and y = ``second``(frame), per plane."""
    a, b = graph.label(), graph.label()
    graph.fragment(f"[{source}]split[{a}][{b}]")
    return graph.join([graph.filter(a, first), graph.filter(b, second)], "lut2=" + _each_plane(expression))


def _sharpen(graph: Graph, source: str, params: Mapping[str, Any]) -> str:
    expression = f"clip(floor(x+{params['amount']:.6g}*(x-y)+0.5),0,255)"
    return _difference(graph, source, "null", _gblur(params["sigma"]), expression)


def _dog(graph: Graph, source: str, params: Mapping[str, Any]) -> str:
    gray = graph.filter(source, _mixer((LUMA, LUMA, LUMA)))
    sigma = params["sigma"]
    expression = f"clip(floor(128+{params['gain']:.6g}*(x-y)+0.5),0,255)"
    return _difference(graph, gray, _gblur(sigma), _gblur(sigma * params["k"]), expression)


VIDEO_EFFECTS: dict[str, VideoEffect] = {
    "invert": _invert,
    "grayscale": _grayscale,
    "blur": _blur,
    "sharpen": _sharpen,
    "brightness": _brightness,
    "pixelate": _pixelate,
    "sepia": _sepia,
    "dog": _dog,
}


def commanded(effect: str, bound: Iterable[str]) -> bool:
    """Whether every bound parameter of ``effect`` can be sent to its ffmpeg filter per frame."""
    names = set(bound)
    return effect in VIDEO_EFFECTS and bool(names) and names <= set(COMMANDS.get(effect, {}))
