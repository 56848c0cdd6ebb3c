"""The memory a worker may use: a kernel limit on its data, and what is left of it.

Every step worker and thumbnail maker runs under ``RLIMIT_DATA`` (``ARTDAG_WORKER_MEMORY``),
set before its Python starts, and everything it starts inherits it (ffmpeg, ffprobe). The kernel
enforces it: an allocation past it fails, so numpy raises MemoryError and ffmpeg says it could
not allocate, and the worker reports either as ``out_of_memory`` instead of the machine going
into swap or its OOM killer. ``RLIMIT_DATA`` rather than ``RLIMIT_AS``: it counts the private
writable memory a process maps (its heap, numpy's arrays, thread stacks, ffmpeg's buffers),
not the shared libraries or the address space glibc reserves for its arenas, so a limit means
memory. It counts memory mapped but not yet touched too: ffmpeg's FFV1 encoder maps a 1.2 GB
packet buffer for a 4K frame.

Image work also estimates what it will need before decoding (``node.pixels.footprint``) and
refuses, with a message naming both figures, what will not fit in what is left.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
from pathlib import Path

SETTING = "ARTDAG_WORKER_MEMORY"
MIN_DEFAULT = 2 * 1024**3  # enough for ffmpeg on 4K video (FFV1 maps 1.2 GB per frame packet)
SHARE_OF_MACHINE = 0.75  # of the machine's memory, split between the workers; the rest for the
# node, Redis and IPFS
CGROUP_LIMIT = Path("/sys/fs/cgroup/memory.max")  # a container's memory, when it has a limit
_FFMPEG_OUT_OF_MEMORY = re.compile(r"cannot allocate memory|failed to allocate|out of memory", re.IGNORECASE)


class OutOfMemory(MemoryError):
    """Work that needs, or needed, more memory than this process may use; the message says
    how much, and what to do about it."""


def default_limit(workers: int) -> int:
    """Three quarters of the machine's memory (a container's, when it is limited) split
    between ``workers``, at least :data:`MIN_DEFAULT`."""
    return max(MIN_DEFAULT, int(machine_memory() * SHARE_OF_MACHINE / max(1, workers)))


def machine_memory() -> int:
    """Physical memory, or the cgroup's limit when that is lower."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    with contextlib.suppress(OSError, ValueError):
        return min(physical, int(CGROUP_LIMIT.read_text().strip()))  # "max" when unlimited
    return physical


def limit_data(limit: int) -> None:
    """Set this process's data limit (soft and hard: the work it starts cannot raise it)."""
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def data_limit() -> int | None:
    """This process's data limit; None when it has none."""
    soft, _ = resource.getrlimit(resource.RLIMIT_DATA)
    return None if soft == resource.RLIM_INFINITY else soft


def data_in_use() -> int:
    """The data this process has mapped now (``VmData``), what counts against the limit."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    return 0


def ensure_fits(need: int, what: str) -> None:
    """OutOfMemory if ``what`` needs more than this process has left of its limit."""
    limit = data_limit()
    if limit is None:
        return
    left = max(0, limit - data_in_use())
    if need > left:
        raise OutOfMemory(
            f"{what} needs about {size_text(need)}, more than the {size_text(left)} a step worker "
            f"has left of its {size_text(limit)} ({SETTING}): make the input smaller (RESIZE it "
            f"first) or raise {SETTING}"
        )


def ran_out(what: str) -> str:
    """The message for work that hit the limit while running (an allocation failed)."""
    limit = data_limit()
    allowed = f"the {size_text(limit)} a step worker may use" if limit else "the memory it could get"
    return f"{what} needed more memory than {allowed} ({SETTING}): make the input smaller or raise {SETTING}"


def ffmpeg_ran_out(stderr_text: str) -> bool:
    """Whether ffmpeg's complaint is a failed allocation."""
    return _FFMPEG_OUT_OF_MEMORY.search(stderr_text) is not None


def size_text(size: int) -> str:
    """``7.4 GiB``, ``512 MiB``: memory sizes as the settings write them."""
    if size >= 1024**3:
        return f"{size / 1024**3:.1f} GiB"
    return f"{size / 1024**2:.0f} MiB"
