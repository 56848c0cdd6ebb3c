"""A parameter bound to an analysis series, as one value per frame of the clip it animates.

The series (``node.executor.bindings``) is read from the analysis record: a per-frame curve as
it is, or events (beats, onsets, scenes) as 1 on their frame and 0 elsewhere. It is scaled to
0..1 by its own lowest and highest values, smoothed (a curve: an exponential moving average
with time constant ``smooth``; events: an instant rise that decays with that time constant, so
a beat is a pulse), shifted by ``offset`` seconds, sampled at each frame's time on the clip's
frame rate, and mapped onto ``range``. Deterministic: the same record and binding give the
same values on every machine.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from node.media.errors import MediaError

EVENT_SERIES = ("beats", "onsets", "scenes")


def is_binding(value: Any) -> bool:
    """Whether a parameter's value is a binding to an analysis series (``{bind: ...}``)."""
    return isinstance(value, Mapping) and "bind" in value


def bound(values: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The parameters of ``values`` bound to an analysis series."""
    return {name: value for name, value in values.items() if is_binding(value)}


def frame_values(
    binding: Mapping[str, Any], analysis: Mapping[str, Any], fps: float, frames: int
) -> list[float]:
    """The bound parameter's value at each of the clip's ``frames`` frames at ``fps``."""
    rate = float(analysis.get("fps") or 30.0)
    levels = _scaled(_series(binding, analysis), rate, float(binding["smooth"]), binding["bind"])
    low, high = binding["range"]
    values = []
    for frame in range(frames):
        at = math.floor((frame / fps - float(binding["offset"])) * rate + 0.5)
        level = levels[min(max(at, 0), len(levels) - 1)]
        values.append(float(f"{low + level * (high - low):.6g}"))
    return values


def _series(binding: Mapping[str, Any], analysis: Mapping[str, Any]) -> list[float]:
    name = str(binding["bind"]).split(".", 1)[1]
    length = max(1, int(analysis.get("frames", 1)))
    if name in EVENT_SERIES:
        events = analysis.get(name) or {}
        marks = [0.0] * length
        for frame in events.get("frames", []):
            if 0 <= int(frame) < length:
                marks[int(frame)] = 1.0
        return marks
    section = analysis.get(name.split(".", 1)[0]) or {}
    values = section.get(name.split(".", 1)[1]) if "." in name else section.get("values")
    if not isinstance(values, list) or not values:
        raise MediaError(f"the analysis has no {name} series to bind: is it among its features?")
    return [float(value) for value in values]


def _scaled(series: list[float], rate: float, smooth_s: float, name: str) -> list[float]:
    low, high = min(series), max(series)
    if high <= low:  # flat: the parameter stays at the low end of its range
        return [0.0] * len(series)
    levels = [(value - low) / (high - low) for value in series]
    if smooth_s <= 0:
        return levels
    keep = math.exp(-1.0 / (smooth_s * rate))
    events = str(name).split(".", 1)[1] in EVENT_SERIES
    smoothed, level = [], levels[0]
    for value in levels:
        level = max(value, level * keep) if events else keep * level + (1 - keep) * value
        smoothed.append(level)
    return smoothed
