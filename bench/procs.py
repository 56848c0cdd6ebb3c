"""CPU time and memory of processes, read from /proc (Linux): where a benchmark's time goes.

A benchmark names the processes it cares about by role ("node", "kubo", "redis" ...), each by
the pids at the root of its process tree; :class:`CpuMeter` reads the CPU seconds each tree used
between :meth:`CpuMeter.start` and :meth:`CpuMeter.stop` (user + system, threads included, and
children that ended and were waited for). A process that starts and ends between the two reads
and is not waited for by one of the trees is missed: none of the node's processes do that.
It also reports the CPU the whole machine used meanwhile outside those roles ("rest of
machine", from /proc/stat): the machine may be shared, and that says how much other work took.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from node.config import Settings
from node.services import EmbeddedServices

TICKS_PER_S = os.sysconf("SC_CLK_TCK")
REST = "rest of machine"


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/pid/stat after the command name (state first), or None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` (all threads) and of its children that it has waited for."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
    return (utime + stime + cutime + cstime) / TICKS_PER_S


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy since boot (all cores; /proc/stat, no idle or
    iowait; steal included: time the hypervisor gave to others)."""
    with Path("/proc/stat").open() as handle:
        fields = [int(value) for value in handle.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / TICKS_PER_S


def parents() -> dict[int, int]:
    """Every live process: pid -> parent pid."""
    found = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))) is not None:
            found[int(entry.name)] = int(fields[1])
    return found


def tree(roots: Iterable[int], exclude: Iterable[int] = ()) -> set[int]:
    """``roots`` and their live descendants, without the subtrees of ``exclude``."""
    parent_of = parents()
    children: dict[int, list[int]] = {}
    for pid, parent in parent_of.items():
        children.setdefault(parent, []).append(pid)
    skip = set(exclude)
    found: set[int] = set()
    todo = [pid for pid in roots if pid in parent_of and pid not in skip]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(child for child in children.get(pid, ()) if child not in skip)
    return found


@dataclass
class CpuMeter:
    """CPU seconds per role between ``start`` and ``stop``; each role is the process trees under
    its root pids, minus the trees of the other roles' roots (a node's embedded daemons are its
    children, yet counted apart)."""

    roles: dict[str, list[int]]
    _before: dict[str, dict[int, float]] = field(default_factory=dict)
    _machine_before: float = 0.0

    def _read(self) -> dict[str, dict[int, float]]:
        every_root = {pid for pids in self.roles.values() for pid in pids}
        readings = {}
        for role, roots in self.roles.items():
            others = every_root - set(roots)
            readings[role] = {pid: cpu_seconds(pid) for pid in tree(roots, exclude=others)}
        return readings

    def start(self) -> None:
        self._before = self._read()
        self._machine_before = machine_busy_seconds()

    def stop(self) -> dict[str, float]:
        """Seconds of CPU per role since ``start`` (a process that began since counts whole),
        and under ``REST`` what the machine used besides."""
        machine = machine_busy_seconds() - self._machine_before
        after = self._read()
        used = {}
        for role, readings in after.items():
            before = self._before.get(role, {})
            used[role] = sum(seconds - before.get(pid, 0.0) for pid, seconds in readings.items())
        used[REST] = max(0.0, machine - sum(used.values()))
        return used


def rss_kib(pid: int, field_name: str = "VmRSS") -> int:
    """A memory figure of ``pid`` from /proc/pid/status (VmRSS, VmHWM ...), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1])
    raise KeyError(field_name)


@contextmanager
def redis_alone(scratch: Path) -> Iterator[EmbeddedServices]:
    """An embedded redis-server alone under ``scratch`` (an IPFS API is given, so no daemon is
    started for it): the shared Redis of the multi-node and Celery benchmarks."""
    settings = Settings(data_dir=scratch / "redis", ipfs_api="http://127.0.0.1:1", log_level="WARNING")
    with EmbeddedServices(settings) as services:
        yield services
