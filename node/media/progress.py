"""Progress inside a long video or audio step: frames done out of the frames expected, and an
estimate of the time left, reported at most once a second.

ffmpeg writes its progress (``-progress pipe:1``: ``frame=``, ``out_time_us=``, then
``progress=continue`` or ``end``, about twice a second) on stdout, which is free because the
output goes to a file; the raw-frame path counts the frames it pumps. Either calls a
:class:`Tracker`, which turns the count into the fields of a ``step_progress`` event and passes
them on when a second has gone by since the last.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

Report = Callable[[dict[str, Any]], None]
EVERY_S = 1.0  # at most one report a second: a run's stream is for people, not a frame log


class Tracker:
    """Counts towards ``total`` units (frames, or audio samples' seconds) and reports."""

    def __init__(
        self, report: Report | None, total: float, *, frames: int = 0, every_s: float = EVERY_S
    ) -> None:
        self._report = report
        self._every_s = every_s
        self._total = total
        self._frames = frames  # the output's frame count, reported with the share done
        self._began = time.monotonic()
        self._last = self._began  # the first report after an interval: a short step sends none
        self._percent = -1

    def update(self, done: float, frames: int | None = None) -> None:
        """``done`` units so far (``frames`` when they are not frames themselves)."""
        now = time.monotonic()
        if self._report is None or self._total <= 0 or now - self._last < self._every_s:
            return
        share = min(1.0, max(0.0, done / self._total))
        percent = min(99, int(100 * share))  # 100 is the step's own finish, not a tick
        if percent == self._percent:
            return  # at most a hundred reports a step, however long it runs
        self._last, self._percent = now, percent
        elapsed = now - self._began
        fields: dict[str, Any] = {
            "percent": percent,
            "eta_s": round(elapsed * (1 - share) / share, 1) if share > 0 else None,
        }
        if self._frames:
            fields |= {"frames": int(frames if frames is not None else done), "total_frames": self._frames}
        self._report(fields)


def follow_ffmpeg(lines: Iterable[bytes], tracker: Tracker, seconds: bool) -> None:
    """Feed ffmpeg's ``-progress`` lines to ``tracker``: by output time when ``seconds`` (sound
    only), else by frames."""
    frame, out_s = 0, 0.0
    for raw in lines:
        key, _, value = raw.decode("ascii", "replace").strip().partition("=")
        if key == "frame" and value.isdigit():
            frame = int(value)
        elif key == "out_time_us" and value.lstrip("-").isdigit():
            out_s = max(0.0, int(value) / 1_000_000)
        elif key == "progress":
            tracker.update(out_s if seconds else frame, frames=frame)
