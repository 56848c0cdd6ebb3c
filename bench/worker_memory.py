"""Bounded workers: what the image #21 reported (a 1.2 MB PNG of 9990 x 9990 pixels) does to a
step worker under the default memory limit. Not a test.

One worker, under ``ARTDAG_WORKER_MEMORY``'s default for this machine (or ``--limit``), gets
``blur`` (estimated past the limit: refused from the header, before decoding) and
``brightness`` (estimated within it: computed) on that image. For each it prints the answer,
the time to it, and the worker's peak resident memory (VmHWM). The baseline is the same job on
a 64 x 64 image in the same run: the refusal should cost about what a tiny job costs, and the
computed job's peak should stay under the limit (before #21 it reached 6.7 GiB with none).

    .venv/bin/python -m bench.worker_memory [--limit 4GiB] [--workers N]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image

from node.config import Settings
from node.errors import NodeError
from node.executor.pool import WorkerPool
from node.memory import default_limit, size_text

SIDE = 9990


def _peak(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


async def _one(
    limit: int, effect: str, params: dict[str, Any], source: Path, out: Path
) -> tuple[str, float, int]:
    """(answer, seconds, peak resident bytes) of one job on a fresh worker under ``limit``."""
    pool = WorkerPool(1, memory_limit=limit)
    try:
        await pool.prestart()
        (pid,) = pool.idle_pids
        job = {"type": "EFFECT", "config": {"effect": effect, "params": params}, "inputs": [str(source)],
               "output": str(out)}  # fmt: skip
        began = time.perf_counter()
        try:
            await pool.run(job, timeout_s=900)
            answer = "computed"
        except NodeError as exc:
            answer = exc.message
        return answer, time.perf_counter() - began, _peak(pid)
    finally:
        await pool.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", help="a size such as 4GiB (default: ARTDAG_WORKER_MEMORY's default)")
    parser.add_argument("--workers", type=int, default=Settings().workers)
    args = parser.parse_args()
    limit = (
        Settings.from_env({"ARTDAG_WORKER_MEMORY": args.limit}).worker_memory
        if args.limit
        else default_limit(args.workers)
    )
    print(f"worker memory limit: {size_text(limit)} ({args.workers} workers)")
    with tempfile.TemporaryDirectory() as where:
        big, small = Path(where) / "big.png", Path(where) / "small.png"
        Image.new("RGB", (SIDE, SIDE), (120, 80, 40)).save(big)
        Image.new("RGB", (64, 64), (120, 80, 40)).save(small)
        print(f"input: {SIDE}x{SIDE} PNG of {big.stat().st_size / 1e6:.1f} MB")
        for effect, params in (("blur", {"sigma": 2.0}), ("brightness", {"factor": 1.2})):
            _, base_s, _ = await _one(limit, effect, params, small, Path(where) / "o.png")
            answer, seconds, peak = await _one(limit, effect, params, big, Path(where) / "o.png")
            print(f"{effect:<11} {seconds:7.2f} s ({seconds / base_s:6.1f}x the 64x64 job's {base_s:.2f} s), "
                  f"peak {size_text(peak)}: {answer}")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
