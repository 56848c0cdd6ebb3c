"""Several node processes on one Redis rendering one recipe: speedup and duplicate executions.

For each N (1 up to the core count), N ``python -m node`` processes with one worker each share
one Redis and one IPFS daemon. A recipe of STEPS independent CPU-bound steps (a Gaussian blur,
each with its own sigma so none is a cache hit) is submitted to the first node; the wall time
runs from submission to completion. Prints wall time, speedup over N = 1 and the number of
duplicate executions (steps started more than once: must be 0).

    .venv/bin/python -m bench.multinode [--max-nodes N] [--steps 32]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import redis

from node.config import Settings
from node.executor.imaging import png_bytes
from node.services import EmbeddedServices
from node.testing import NodeProcess

IMAGE = np.random.default_rng(4).integers(0, 256, (800, 800, 3), dtype=np.uint8)


def recipe(steps: int, salt: int) -> str:
    nodes = ["    - {id: src, type: SOURCE, config: {input: true}}"]
    for index in range(steps):
        sigma = round(4 + index / 100 + salt / 10000, 4)  # distinct work every step and every round
        nodes.append(
            f"    - {{id: b{index}, type: EFFECT, config: {{effect: blur, sigma: {sigma}}}, inputs: [src]}}"
        )
    return "name: fan\ndag:\n  nodes:\n" + "\n".join(nodes) + f"\n  output: b{steps - 1}\n"


def call(node: NodeProcess, method: str, path: str, body: bytes | None = None, **headers: str) -> Any:
    request = urllib.request.Request(
        f"{node.url}{path}",
        data=body,
        method=method,
        headers={"Authorization": f"Bearer {node.token()}", **headers},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


def upload(node: NodeProcess, data: bytes) -> str:
    boundary = "benchboundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n\r\n'.encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return str(
        call(
            node,
            "POST",
            "/cache/upload",
            body,
            **{"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )["cid"]
    )


def render(nodes: list[NodeProcess], image_cid: str, steps: int, salt: int) -> tuple[float, str]:
    first = nodes[0]
    stored = call(
        first,
        "POST",
        "/recipes/upload",
        recipe(steps, salt).encode(),
        **{"Content-Type": "application/x-yaml"},
    )
    body = json.dumps({"recipe": stored["id"], "inputs": [image_cid]}).encode()
    started = time.perf_counter()
    run_id = str(call(first, "POST", "/runs", body, **{"Content-Type": "application/json"})["run_id"])
    while True:
        status = call(first, "GET", f"/runs/{run_id}")["status"]
        if status in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    if status != "completed":
        raise RuntimeError(f"run {run_id} {status}")
    return elapsed, run_id


def duplicates(client: redis.Redis, prefix: str, run_id: str) -> int:
    entries: Any = client.xrange(f"{prefix}events:{run_id}")
    started = Counter(
        json.loads(fields["data"])["cache_id"] for _, fields in entries if fields["kind"] == "step_started"
    )
    return sum(count - 1 for count in started.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-nodes", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--steps", type=int, default=32)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as scratch,
        EmbeddedServices(Settings(data_dir=Path(scratch) / "daemons", log_level="WARNING")) as daemons,
    ):
        client = redis.Redis.from_url(str(daemons.settings.redis_url), decode_responses=True)
        baseline = 0.0
        for count in range(1, args.max_nodes + 1):
            prefix = f"bench{count}:"
            env = {
                "ARTDAG_REDIS_URL": str(daemons.settings.redis_url),
                "ARTDAG_IPFS_API": str(daemons.settings.ipfs_api),
                "ARTDAG_REDIS_PREFIX": prefix,
                "ARTDAG_WORKERS": "1",
                "ARTDAG_LOG_LEVEL": "WARNING",
            }
            nodes = [NodeProcess(Path(scratch) / f"n{count}-{index}", env) for index in range(count)]
            try:
                for node in nodes:
                    node.wait_healthy()
                image_cid = upload(nodes[0], png_bytes(IMAGE))
                render(nodes, image_cid, 2, salt=count)  # warm: workers started, numpy imported
                elapsed, run_id = render(nodes, image_cid, args.steps, salt=100 + count)
            finally:
                for node in nodes:
                    node.popen.terminate()
                for node in nodes:
                    node.popen.wait()
            baseline = baseline or elapsed
            repeated = duplicates(client, prefix, run_id)
            speedup = baseline / elapsed
            print(f"N={count}: {args.steps} CPU-bound steps in {elapsed:.2f} s, speedup {speedup:.2f} "
                  f"(ideal {count}, target >= {0.85 * count:.2f}), duplicates {repeated}")  # fmt: skip
        client.close()


if __name__ == "__main__":
    main()
