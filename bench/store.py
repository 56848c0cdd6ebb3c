"""Upload and download throughput through the node against the IPFS daemon directly.

Baseline, in the same run and on the same daemon: ``/api/v0/add`` (same import settings) and
``/api/v0/cat`` straight to the daemon. Each round uploads fresh random files (so neither side
benefits from blocks the daemon already has) and alternates which side goes first. The node's
peak RSS growth during its upload is read from /proc (VmHWM after a reset) of the node process.

    .venv/bin/python -m bench.store [--size-mb 256] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.report import print_medians
from node.config import Settings
from node.services import EmbeddedServices
from node.store.ipfs import IMPORT_PARAMS
from node.testing import NodeProcess

CHUNK = 1024 * 1024


def write_random_file(path: Path, size: int) -> None:
    with path.open("wb") as handle:
        for _ in range(size // CHUNK):
            handle.write(os.urandom(CHUNK))


def _form(path: Path) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("file", path.open("rb"), filename=path.name, content_type="application/octet-stream")
    return form


async def _drain(response: aiohttp.ClientResponse) -> int:
    received = 0
    async for chunk in response.content.iter_chunked(CHUNK):
        received += len(chunk)
    return received


async def direct_round(
    session: aiohttp.ClientSession, api: str, path: Path, size: int
) -> tuple[float, float]:
    """(upload s, download s) straight to the daemon."""
    started = time.perf_counter()
    params = {**IMPORT_PARAMS, "pin": "true", "progress": "false"}
    async with session.post(f"{api}/api/v0/add", params=params, data=_form(path)) as response:
        response.raise_for_status()
        cid = (await response.json(content_type=None))["Hash"]
    uploaded = time.perf_counter() - started
    started = time.perf_counter()
    async with session.post(f"{api}/api/v0/cat", params={"arg": cid}) as response:
        assert await _drain(response) == size
    return uploaded, time.perf_counter() - started


async def node_round(
    session: aiohttp.ClientSession, node: NodeProcess, path: Path, size: int
) -> tuple[float, float, int]:
    """(upload s, download s, peak RSS growth KiB during the upload) through the node."""
    headers = {"Authorization": f"Bearer {node.token()}"}
    baseline_kib = node.memory_kib("VmRSS")
    node.reset_peak_memory()
    started = time.perf_counter()
    async with session.post(f"{node.url}/cache/upload", data=_form(path), headers=headers) as response:
        assert response.status in (200, 201), await response.text()
        cid = (await response.json())["cid"]
    uploaded = time.perf_counter() - started
    growth_kib = node.memory_kib("VmHWM") - baseline_kib
    started = time.perf_counter()
    async with session.get(f"{node.url}/cache/{cid}") as response:
        assert await _drain(response) == size
    return uploaded, time.perf_counter() - started, growth_kib


async def run(size_mb: int, rounds: int, scratch: Path, api: str, node: NodeProcess) -> None:
    size = size_mb * CHUNK
    figures: dict[str, list[float]] = {"direct up": [], "direct down": [], "node up": [], "node down": []}
    growth: list[int] = []
    timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for index in range(rounds):
            files = [scratch / f"r{index}-{side}.bin" for side in ("a", "b")]
            for path in files:
                await asyncio.to_thread(write_random_file, path, size)
            order = ["direct", "node"] if index % 2 == 0 else ["node", "direct"]
            for side, path in zip(order, files, strict=True):
                if side == "direct":
                    up, down = await direct_round(session, api, path, size)
                else:
                    up, down, grew = await node_round(session, node, path, size)
                    growth.append(grew)
                figures[f"{side} up"].append(size / up / 1e6)
                figures[f"{side} down"].append(size / down / 1e6)
            for path in files:
                path.unlink()
    median = print_medians(f"{size_mb} MB, median of {rounds} rounds (MB/s, 1 MB = 10^6 bytes)", figures, 1)
    print(f"ratio node/direct upload:   {median['node up'] / median['direct up']:.2f}")
    print(f"ratio node/direct download: {median['node down'] / median['direct down']:.2f}")
    print(f"node peak RSS growth during upload: max {max(growth) / 1024:.1f} MiB (all: {growth} KiB)")


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
            }
            env["ARTDAG_LOG_LEVEL"] = "WARNING"
            node = NodeProcess(scratch / "node", env)
            try:
                node.wait_healthy()
                asyncio.run(run(args.size_mb, args.rounds, scratch, str(daemons.settings.ipfs_api), node))
            finally:
                node.stop()


if __name__ == "__main__":
    main()
