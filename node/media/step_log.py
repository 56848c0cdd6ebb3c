"""A step's log: each ffmpeg command it ran and what ffmpeg warned about, its tail kept with the
step's outcome (``GET /runs/{id}`` and the run page show it beside the step's error).

The worker collects while it computes one job (``collecting``); ``run_ffmpeg`` and the raw-frame
path ``note`` each command with its stderr (ffmpeg runs at ``-loglevel warning``). Paths and
memory addresses are taken out: clients read it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from contextvars import ContextVar

LOG_MAX = 4096  # characters of a step's log kept: its end, where the outcome is
_lines: ContextVar[list[str] | None] = ContextVar("step_log", default=None)


def scrub(text: str) -> str:
    """``text`` without the node's directories or memory addresses."""
    text = re.sub(r" @ 0x[0-9a-f]+", "", text)
    return re.sub(r"(?<![\w.])/(?:[^/:'\n ]+/)+", "", text)  # /work/cache/ab/abcd.out -> abcd.out


@contextlib.contextmanager
def collecting() -> Iterator[list[str]]:
    """Collect what this job's tools say (in this thread) into the list yielded."""
    lines: list[str] = []
    token = _lines.set(lines)
    try:
        yield lines
    finally:
        _lines.reset(token)


def note(command: list[str], stderr: bytes) -> None:
    """Add one command and what it said, if a job is collecting."""
    lines = _lines.get()
    if lines is None:
        return
    lines.append("$ " + scrub(" ".join(command)))
    said = stderr.decode("utf-8", "replace").strip()
    if said:
        lines.append(scrub(said))


def tail(lines: list[str]) -> str:
    """The log's last LOG_MAX characters."""
    text = "\n".join(lines)
    return text[-LOG_MAX:]
