"""What a web UI page costs beside the JSON the same data comes in.

One node (``python -m node`` with its embedded Redis and IPFS, uvloop) is filled with N uploaded
images and N completed runs (``invert`` on each image), and every image's thumbnail is made
once. Then, one request at a time from this process on a keep-alive connection, each pair is
timed R times, alternating page and JSON so that the machine's noise falls on both:

    /                  (page)  vs  /            (JSON)
    /runs              (page)  vs  /runs?limit=25
    /run/{id}          (page)  vs  /runs/{id}
    /media             (page)  vs  /cache?kind=media&limit=48
    /recipes           (page)  vs  /effects

Prints the median and p90 latency of each and the page/JSON ratio of the medians.

    .venv/bin/python -m bench.pages [--items 100] [--repeat 200]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

from node.testing import NodeProcess

HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


def fill(node: NodeProcess, items: int) -> str:
    """N images, a completed ``invert`` run on each, and their thumbnails; the last run's id."""
    rng = np.random.default_rng(7)
    run_id = ""
    for _ in range(items):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (64, 96, 3), np.uint8)).save(buffer, format="PNG")
        cid = node.upload(buffer.getvalue())["cid"]
        body = json.dumps({"recipe": "invert", "inputs": [cid]}).encode()
        run_id = node.call("POST", "/runs", body, **{"Content-Type": "application/json"})["run_id"]
        get(node, f"/cache/{cid}/thumbnail", {})
    deadline = time.monotonic() + 300
    while (
        node.call("GET", "/runs?status=running&limit=1")["items"]
        or node.call("GET", "/runs?status=queued&limit=1")["items"]
    ):
        if time.monotonic() > deadline:
            raise TimeoutError("the runs did not finish in 5 minutes")
        time.sleep(0.2)
    return run_id


def get(node: NodeProcess, path: str, headers: dict[str, str]) -> float:
    """Seconds for one whole answer."""
    request = urllib.request.Request(f"{node.url}{path}", headers=headers)
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        node = NodeProcess(Path(scratch) / "node", env={"ARTDAG_LOG_LEVEL": "WARNING"})
        try:
            node.wait_healthy()
            run_id = fill(node, args.items)
            pairs = [
                ("/", "/"),
                ("/runs", "/runs?limit=25"),
                (f"/run/{run_id}", f"/runs/{run_id}"),
                ("/media", "/cache?kind=media&limit=48"),
                ("/recipes", "/effects"),
            ]
            print(f"{args.items} images and runs, {args.repeat} requests each, one at a time")
            print(f"{'page':<26} {'median':>8} {'p90':>8}   {'JSON':<28} {'median':>8} {'p90':>8}  ratio")
            for page, api in pairs:
                page_s, api_s = [], []
                for _ in range(args.repeat):
                    page_s.append(get(node, page, HTML))
                    api_s.append(get(node, api, {"Accept": "application/json"}))
                page_ms = [1000 * value for value in page_s]
                api_ms = [1000 * value for value in api_s]
                ratio = statistics.median(page_ms) / statistics.median(api_ms)
                print(
                    f"{page:<26.26} {statistics.median(page_ms):8.2f} {p90(page_ms):8.2f}   "
                    f"{api:<28.28} {statistics.median(api_ms):8.2f} {p90(api_ms):8.2f}  {ratio:5.2f}"
                )
        finally:
            node.stop()


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1]


if __name__ == "__main__":
    main()
