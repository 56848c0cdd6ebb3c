"""An analysis record drawn as a picture (server-side SVG): its energy (or loudness, or the
low band) over time as a filled curve, beats and onsets as ticks, scene cuts as full-height
lines, with a time axis. What the run page shows for each ANALYZE step; the record's JSON is
at ``/cache/{cid}``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from markupsafe import Markup, escape

WIDTH, HEIGHT, PAD = 720, 140, 24
MAX_POINTS = 720  # one per horizontal pixel at most


def analysis_svg(record: Mapping[str, Any], title: str) -> Markup:
    """The picture of ``record``; ``title`` names it for screen readers."""
    duration = max(float(record.get("duration_s") or 0.0), 1e-6)
    parts = [_curve(record), *_marks(record, duration), *_axis(duration)]
    label = escape(title)
    return Markup(  # noqa: S704 - numbers and fixed words; the one title is escaped
        f'<svg class="analysis" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{label}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{label}</title>'
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" class="analysis-bg"/>'
        + "".join(parts)
        + "</svg>"
    )


def _series(record: Mapping[str, Any]) -> tuple[str, list[float]]:
    for name, values in (
        ("energy", (record.get("energy") or {}).get("values")),
        ("loudness", (record.get("loudness") or {}).get("values")),
        ("low band", (record.get("bands") or {}).get("low")),
    ):
        if isinstance(values, list) and values:
            return name, [float(value) for value in values]
    return "", []


def _curve(record: Mapping[str, Any]) -> str:
    name, values = _series(record)
    if not values:
        return ""
    step = max(1, len(values) // MAX_POINTS)
    sampled = [max(values[index : index + step]) for index in range(0, len(values), step)]
    low, high = min(sampled), max(sampled)
    span = (high - low) or 1.0
    inner_w, inner_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD
    last = max(1, len(sampled) - 1)
    points = " ".join(
        f"{PAD + index * inner_w / last:.1f},{PAD + inner_h - (value - low) / span * inner_h:.1f}"
        for index, value in enumerate(sampled)
    )
    baseline = f"{WIDTH - PAD},{HEIGHT - PAD} {PAD},{HEIGHT - PAD}"
    return (
        f'<polygon class="analysis-curve" points="{points} {baseline}"><title>{name}</title></polygon>'
        f'<text x="{PAD}" y="{PAD - 8}" class="analysis-label">{name}</text>'
    )


def _marks(record: Mapping[str, Any], duration: float) -> list[str]:
    inner_w = WIDTH - 2 * PAD
    marks = []
    for series, top, css in (
        ("onsets", HEIGHT - PAD - 8, "onset"),
        ("beats", PAD, "beat"),
        ("scenes", 0, "scene"),
    ):
        times = (record.get(series) or {}).get("times") or []
        for time in times[:4000]:
            x = PAD + float(time) / duration * inner_w
            marks.append(
                f'<line class="analysis-{css}" x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{HEIGHT - PAD}">'
                f"<title>{series[:-1]} at {float(time):.2f} s</title></line>"
            )
    return marks


def _axis(duration: float) -> list[str]:
    inner_w = WIDTH - 2 * PAD
    tick = next((size for size in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600) if duration / size <= 10), 1200)
    labels = []
    time = 0
    while time <= duration:
        x = PAD + time / duration * inner_w
        labels.append(f'<text x="{x:.1f}" y="{HEIGHT - 6}" class="analysis-axis">{time} s</text>')
        time += tick
    return labels
