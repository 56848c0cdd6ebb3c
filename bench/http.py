"""HTTP throughput and latency of the node's read paths, beside a hello-world aiohttp server.

Three servers are measured in one run, each in its own process with uvloop: a node
(``python -m node`` with its embedded Redis and IPFS) for ``GET /runs/{id}`` of a completed
run and ``GET /cache/{cid}`` of a 1 KiB item, and a bare aiohttp handler answering "hello".
The load comes from this process: 64 concurrent clients on keep-alive connections for a fixed
time per target (after a warm-up). Prints requests/s, p50 and p99 latency, and each target's
throughput as a ratio to the hello-world server's (targets: >= 0.5, p99 < 20 ms).

    .venv/bin/python -m bench.http [--seconds 10] [--clients 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp
import numpy as np
import uvloop
from aiohttp import web

from bench.report import print_medians
from node.pixels.imaging import png_bytes
from node.services import free_port
from node.testing import NodeProcess


def hello_server(port: int) -> None:
    """The baseline: one aiohttp handler, the same event loop as the node."""

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/", hello)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, loop=uvloop.new_event_loop())


def start_hello() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "bench.http", "--hello-server", str(port)])
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return process, url
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("hello-world server did not start")


def prepare_node(node: NodeProcess) -> tuple[str, str]:
    """A completed run and a 1 KiB item on the node: their URLs."""
    image = png_bytes(np.random.default_rng(3).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    image_cid = node.upload(image)["cid"]
    small_cid = node.upload(os.urandom(1024))["cid"]
    body = json.dumps({"recipe": "invert", "inputs": [image_cid]}).encode()
    run_id = node.call("POST", "/runs", body, **{"Content-Type": "application/json"})["run_id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if node.call("GET", f"/runs/{run_id}")["status"] == "completed":
            return f"{node.url}/runs/{run_id}", f"{node.url}/cache/{small_cid}"
        time.sleep(0.1)
    raise RuntimeError("the benchmark's run did not complete")


async def load(url: str, seconds: float, clients: int) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms) of ``clients`` concurrent loops on ``url`` for ``seconds``."""
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client(until: float, record: bool) -> None:
            while time.perf_counter() < until:
                started = time.perf_counter()
                async with session.get(url) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"{url} answered {response.status}")
                if record:
                    latencies.append(time.perf_counter() - started)

        warm_until = time.perf_counter() + 1.0
        await asyncio.gather(*(client(warm_until, False) for _ in range(clients)))
        started = time.perf_counter()
        until = started + seconds
        await asyncio.gather(*(client(until, True) for _ in range(clients)))
        elapsed = time.perf_counter() - started
    ordered = np.sort(np.array(latencies)) * 1000
    return len(latencies) / elapsed, float(np.percentile(ordered, 50)), float(np.percentile(ordered, 99))


def measure(targets: dict[str, str], seconds: float, clients: int, rounds: int) -> None:
    figures: dict[str, list[float]] = {}
    for _ in range(rounds):
        for name, url in targets.items():  # interleaved, so drift hits every target alike
            rate, p50, p99 = uvloop.run(load(url, seconds, clients))
            figures.setdefault(f"{name} req/s", []).append(rate)
            figures.setdefault(f"{name} p50 ms", []).append(p50)
            figures.setdefault(f"{name} p99 ms", []).append(p99)
    medians = print_medians(f"{clients} clients, {seconds:.0f} s per target, {rounds} rounds", figures)
    hello = medians["hello-world req/s"]
    for name in targets:
        if name != "hello-world":
            print(f"ratio {name} / hello-world: {medians[f'{name} req/s'] / hello:.2f} (target >= 0.5); "
                  f"p99 {medians[f'{name} p99 ms']:.1f} ms (target < 20)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hello-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hello_server:
        hello_server(args.hello_server)
        return
    with tempfile.TemporaryDirectory() as scratch:
        node = NodeProcess(Path(scratch) / "node", env={"ARTDAG_LOG_LEVEL": "WARNING"})
        hello, hello_url = start_hello()
        try:
            node.wait_healthy()
            run_url, cache_url = prepare_node(node)
            targets = {"hello-world": hello_url, "GET /runs/{id}": run_url, "GET /cache/{cid}": cache_url}
            measure(targets, args.seconds, args.clients, args.rounds)
        finally:
            hello.terminate()
            node.popen.terminate()
            hello.wait()
            node.popen.wait()


if __name__ == "__main__":
    main()
