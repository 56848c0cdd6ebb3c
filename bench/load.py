"""A crowd at one node: concurrent submissions, then concurrent reads. Not a test: figures.

A ``python -m node`` child with the defaults (its own redis-server and Kubo) gets SUBMITS
concurrent ``POST /runs`` (a two-step recipe on a small image, each with its own parameters, so
none is a cache hit), all sent at once on one connection each; then the script waits for every
accepted run to end. Then READS concurrent ``GET /runs/{id}`` of those runs, and as many
``GET /health``, all at once. It prints how many answered what status (target: every
submission 202 and completed, every read 200 within 10 s, no 5xx), the latencies (p50, p99,
max), how long the runs took to drain, and, as the baseline measured in the same run, one
request alone of each kind: the ratio says what the crowd costs each request.

    .venv/bin/python -m bench.load [--submits 1000] [--reads 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from node.pixels.imaging import png_bytes
from node.testing import NodeProcess

IMAGE = png_bytes(np.random.default_rng(9).integers(0, 256, (32, 32, 3), dtype=np.uint8))
READ_DEADLINE_S = 10.0
FINAL = ("completed", "failed", "cancelled")


def recipe(index: int) -> str:
    factor = 0.5 + index / 100_000  # each run its own parameters: no step is a cache hit
    return (
        "name: load\ndag:\n  nodes:\n    - {id: src, type: SOURCE, config: {input: true}}\n"
        f"    - {{id: a, type: EFFECT, config: {{effect: brightness, factor: {factor}}}, inputs: [src]}}\n"
        "    - {id: b, type: EFFECT, config: {effect: invert}, inputs: [a]}\n  output: b\n"
    )


Timed = tuple[int, float, Any]  # status (0: no answer), seconds, the JSON body


async def timed(session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> Timed:
    started = time.perf_counter()
    try:
        async with session.request(method, url, **kwargs) as response:
            body = await response.json(content_type=None)
            return response.status, time.perf_counter() - started, body
    except (aiohttp.ClientError, TimeoutError) as exc:
        return 0, time.perf_counter() - started, str(exc)


def summary(name: str, results: list[Timed], baseline_s: float) -> None:
    statuses = Counter(status for status, _, _ in results)
    seconds = sorted(elapsed for _, elapsed, _ in results)
    p50, p99 = statistics.median(seconds), seconds[min(len(seconds) - 1, int(0.99 * len(seconds)))]
    print(f"{name}: {len(results)} at once; statuses {dict(sorted(statuses.items()))}")
    print(f"  latency p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {seconds[-1] * 1000:.0f} ms; "
          f"alone {baseline_s * 1000:.1f} ms (p99 / alone: {p99 / baseline_s:.0f}x)")  # fmt: skip


async def drain(session: aiohttp.ClientSession, url: str, run_ids: list[str]) -> Counter[str]:
    """Wait until every run has a final status; how many ended with each."""
    pending, ended = set(run_ids), Counter[str]()
    while pending:
        for run_id in list(pending)[:200]:
            status, _, body = await timed(session, "GET", f"{url}/runs/{run_id}")
            if status == 200 and body["status"] in FINAL:
                ended[body["status"]] += 1
                pending.discard(run_id)
        if pending:
            await asyncio.sleep(1.0)
    return ended


async def run(node: NodeProcess, submits: int, reads: int) -> None:
    headers = {"Authorization": f"Bearer {node.token()}"}
    connector = aiohttp.TCPConnector(limit=0)  # one connection per request: a real crowd
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as session:
        source = node.upload(IMAGE)["cid"]
        recipes = []
        for index in range(submits):  # uploaded first: the crowd is the submissions alone
            form = recipe(index).encode()
            status, _, body = await timed(session, "POST", f"{node.url}/recipes/upload", data=form)
            assert status == 201, body
            recipes.append(body["id"])
        alone = await timed(
            session, "POST", f"{node.url}/runs", json={"recipe": recipes[0], "inputs": [source]}
        )
        started = time.perf_counter()
        submitted = await asyncio.gather(*(
            timed(session, "POST", f"{node.url}/runs", json={"recipe": recipe_id, "inputs": [source]})
            for recipe_id in recipes[1:]
        ))  # fmt: skip
        accepted_in = time.perf_counter() - started
        summary("POST /runs", submitted, alone[1])
        run_ids = [body["run_id"] for status, _, body in submitted if status == 202] + [alone[2]["run_id"]]
        ended = await drain(session, node.url, run_ids)
        print(f"  all {len(submitted)} answered in {accepted_in:.1f} s; the {len(run_ids)} accepted ended "
              f"{dict(ended)} {time.perf_counter() - started:.0f} s after the first was sent")  # fmt: skip
        targets = [f"{node.url}/runs/{run_ids[index % len(run_ids)]}" for index in range(reads)]
        solo = await timed(session, "GET", targets[0])
        got = await asyncio.gather(*(timed(session, "GET", target) for target in targets))
        summary("GET /runs/{id}", got, solo[1])
        late = sum(1 for _, elapsed, _ in got if elapsed > READ_DEADLINE_S)
        solo_health = await timed(session, "GET", f"{node.url}/health")
        health = await asyncio.gather(*(timed(session, "GET", f"{node.url}/health") for _ in range(reads)))
        summary("GET /health", health, solo_health[1])
        errors = sum(1 for status, _, _ in [*submitted, *got, *health] if status >= 500 or status == 0)
        print(f"5xx or no answer: {errors}; reads over {READ_DEADLINE_S:.0f} s: {late}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submits", type=int, default=1000)
    parser.add_argument("--reads", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="artdag-load-") as scratch:
        node = NodeProcess(Path(scratch) / "node", {"ARTDAG_LOG_LEVEL": "WARNING"})
        try:
            node.wait_healthy()
            asyncio.run(run(node, args.submits, args.reads))
        finally:
            node.popen.terminate()
            node.popen.wait(60)


if __name__ == "__main__":
    main()
