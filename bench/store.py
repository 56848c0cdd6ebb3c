"""Upload and download throughput through the node against the IPFS daemon directly.

Baseline, in the same run and on the same daemon: ``/api/v0/add`` (same import settings, with
pin) and ``/api/v0/cat`` straight to the daemon (Kubo), from the same client (aiohttp with a
1 MiB read buffer, as the node's own). Each round uploads fresh random files (so neither side
benefits from blocks the daemon already has) and alternates which side goes first. The node's
peak RSS growth during its upload and during its download is read from /proc (VmHWM after a
reset) of the node process; the CPU seconds the node (its process tree) and Kubo used during
each transfer show where the time goes.

Targets (issue #18): node/direct >= 0.9 both ways; node RSS growth < 64 MB at 256 MB.

    .venv/bin/python -m bench.store [--size-mb 256] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from bench.procs import REST, CpuMeter
from bench.report import print_medians
from node.config import Settings
from node.services import EmbeddedServices
from node.store.ipfs import IMPORT_PARAMS
from node.testing import NodeProcess

CHUNK = 1024 * 1024
READ_BUFSIZE = 1024 * 1024  # the node reads Kubo with this buffer (node/http/app.py)
RATIO_TARGET = 0.9
RSS_TARGET_MIB = 64


def write_random_file(path: Path, size: int) -> None:
    """``size`` random bytes, written through to the disk (so that writing them back does not
    overlap the transfers that are timed)."""
    with path.open("wb") as handle:
        for _ in range(size // CHUNK):
            handle.write(os.urandom(CHUNK))
    os.sync()


def _form(path: Path) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("file", path.open("rb"), filename=path.name, content_type="application/octet-stream")
    return form


async def _drain(response: aiohttp.ClientResponse) -> int:
    received = 0
    async for chunk in response.content.iter_chunked(CHUNK):
        received += len(chunk)
    return received


class Sides:
    """The two ways to the same daemon, each timed with the CPU its processes used."""

    def __init__(
        self, session: aiohttp.ClientSession, api: str, node: NodeProcess, daemons: dict[str, int]
    ) -> None:
        self.session = session
        self.api = api
        self.node = node
        self.meter = CpuMeter(
            {"client": [os.getpid()], "node": [node.pid], **{k: [v] for k, v in daemons.items()}}
        )
        keys = [f"{side} {way}" for way in ("up", "down") for side in ("direct", "node")]
        self.figures: dict[str, list[float]] = {key: [] for key in keys}
        self.cpu: dict[str, list[float]] = {
            f"{key}: {role}": []
            for key in keys
            for role in [*self.meter.roles, REST]
            if role != "redis" and not (key.startswith("direct") and role == "node")
        }
        self.growth: dict[str, list[int]] = {"up": [], "down": []}

    async def timed(self, key: str, size: int, action: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``action``; record its MB/s and CPU seconds under ``key``; its result."""
        self.meter.start()
        started = time.perf_counter()
        result = await action()
        elapsed = time.perf_counter() - started
        used = self.meter.stop()
        self.figures[key].append(size / elapsed / 1e6)
        for role, seconds in used.items():
            if f"{key}: {role}" in self.cpu:
                self.cpu[f"{key}: {role}"].append(seconds)
        return result

    async def direct(self, path: Path, size: int) -> None:
        async def upload() -> str:
            params = {**IMPORT_PARAMS, "pin": "true", "progress": "false"}
            async with self.session.post(f"{self.api}/api/v0/add", params=params, data=_form(path)) as answer:
                answer.raise_for_status()
                return str((await answer.json(content_type=None))["Hash"])

        async def download() -> None:
            async with self.session.post(f"{self.api}/api/v0/cat", params={"arg": cid}) as answer:
                assert await _drain(answer) == size

        cid = await self.timed("direct up", size, upload)
        await self.timed("direct down", size, download)

    async def through_node(self, path: Path, size: int) -> None:
        node = self.node
        headers = {"Authorization": f"Bearer {node.token()}"}

        async def upload() -> str:
            async with self.session.post(
                f"{node.url}/cache/upload", data=_form(path), headers=headers
            ) as answer:
                assert answer.status in (200, 201), await answer.text()
                return str((await answer.json())["cid"])

        async def download() -> None:
            async with self.session.get(f"{node.url}/cache/{cid}") as answer:
                assert await _drain(answer) == size

        for way, action in (("up", upload), ("down", download)):
            baseline_kib = node.memory_kib("VmRSS")
            node.reset_peak_memory()
            result = await self.timed(f"node {way}", size, action)
            self.growth[way].append(node.memory_kib("VmHWM") - baseline_kib)
            if way == "up":
                cid = result


async def run(
    size_mb: int, rounds: int, *, scratch: Path, api: str, node: NodeProcess, daemons: dict[str, int]
) -> None:
    size = size_mb * CHUNK
    timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
    async with aiohttp.ClientSession(timeout=timeout, read_bufsize=READ_BUFSIZE) as session:
        sides = Sides(session, api, node, daemons)
        for index in range(rounds):
            files = [scratch / f"r{index}-{side}.bin" for side in ("a", "b")]
            for path in files:
                await asyncio.to_thread(write_random_file, path, size)
            order = ["direct", "node"] if index % 2 == 0 else ["node", "direct"]
            for side, path in zip(order, files, strict=True):
                await (sides.direct(path, size) if side == "direct" else sides.through_node(path, size))
            for path in files:
                path.unlink()
    title = f"{size_mb} MB, median of {rounds} rounds (MB/s, 1 MB = 10^6 bytes)"
    median = print_medians(title, sides.figures, 1)
    print_medians("CPU seconds per process during each transfer (client: this benchmark)", sides.cpu)
    for way, name in (("up", "upload"), ("down", "download")):
        ratio = median[f"node {way}"] / median[f"direct {way}"]
        verdict = "met" if ratio >= RATIO_TARGET else "MISSED"
        print(f"ratio node/direct {name}: {ratio:.2f} (target >= {RATIO_TARGET}: {verdict})")
    for way, grown in sides.growth.items():
        mib = statistics.median(grown) / 1024
        verdict = "met" if max(grown) / 1024 < RSS_TARGET_MIB else "MISSED"
        print(f"node peak RSS growth during {way}load: median {mib:.1f} MiB, max {max(grown) / 1024:.1f} MiB "
              f"(target < {RSS_TARGET_MIB} MB at 256 MB: {verdict}; all: {grown} KiB)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        with EmbeddedServices(Settings(data_dir=scratch / "daemons")) as daemons:
            env = {
                "ARTDAG_REDIS_URL": str(daemons.settings.redis_url),
                "ARTDAG_IPFS_API": str(daemons.settings.ipfs_api),
                "ARTDAG_LOG_LEVEL": "WARNING",
            }
            pids = {role: proc.pid for role, proc in daemons.processes.items() if proc.pid is not None}
            roles = {"kubo": pids["ipfs"], "redis": pids["redis"]}
            node = NodeProcess(scratch / "node", env)
            try:
                node.wait_healthy()
                api = str(daemons.settings.ipfs_api)
                asyncio.run(
                    run(args.size_mb, args.rounds, scratch=scratch, api=api, node=node, daemons=roles)
                )
            finally:
                node.stop()


if __name__ == "__main__":
    main()
