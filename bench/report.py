"""Printing benchmark figures: the median of each series beside every round's value."""

from __future__ import annotations

import statistics


def print_medians(title: str, figures: dict[str, list[float]], decimals: int = 2) -> dict[str, float]:
    """Print ``title`` and one line per series (median, then all rounds); return the medians."""
    medians = {key: statistics.median(values) for key, values in figures.items()}
    width = max(len(key) for key in figures) + 2
    print(title)
    for key, value in medians.items():
        rounds = ", ".join(f"{v:.{decimals}f}" for v in figures[key])
        print(f"  {key:<{width}} {value:9.{decimals}f}   (all: {rounds})")
    return medians
