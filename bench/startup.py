"""How long `make run`'s node takes to become healthy, and to stop, against its own daemons.

Baseline, measured in the same run: starting the embedded daemons (Kubo and Redis) alone
through ``EmbeddedServices`` (no node). The ratio shows what the node adds on top of its daemons.
Cold = a fresh data directory (IPFS repo init and node key creation included); the node then
runs until it has published its first state (``state.json`` in its data directory), and is
stopped with SIGINT (stop = SIGINT to exit); warm = a restart of that node, the usual restart.
"warm, unpublished" restarts a node that was stopped as soon as it was healthy, before its
first publication: its IPNS key exists but names nothing yet, and the node looks for its last
state under that name at start. Figures: the median of the rounds.

    .venv/bin/python -m bench.startup [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.report import print_medians
from node.config import Settings
from node.federation.publisher import STATE_FILE
from node.services import EmbeddedServices, free_port


def daemons_only(data_dir: Path) -> float:
    """Seconds for EmbeddedServices to start Redis and IPFS and see both answer."""
    started = time.perf_counter()
    services = EmbeddedServices(Settings(data_dir=data_dir))
    services.start()
    elapsed = time.perf_counter() - started
    services.stop()
    return elapsed


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return bool(json.load(response)["status"] == "ok")
    except OSError:
        return False


def node_round(data_dir: Path, *, until_published: bool = False) -> tuple[float, float]:
    """(seconds to a healthy /health, seconds from SIGINT to exit) for one `python -m node`;
    ``until_published``: it is stopped only once it has published a state."""
    port = free_port()
    env = {
        **os.environ,
        "ARTDAG_DATA_DIR": str(data_dir),
        "ARTDAG_PORT": str(port),
        "ARTDAG_LOG_LEVEL": "WARNING",
    }
    started = time.perf_counter()
    log_path = data_dir.parent / f"{data_dir.name}-node.log"
    with log_path.open("ab") as log_file:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([sys.executable, "-m", "node"], env=env, stderr=log_file)
    try:
        deadline = started + 120
        while not _healthy(port):
            if proc.poll() is not None or time.perf_counter() > deadline:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise SystemExit(f"node did not become healthy (exit code {proc.poll()}); its log:\n{tail}")
            time.sleep(0.02)
        ready = time.perf_counter() - started
        while until_published and not (data_dir / STATE_FILE).exists():
            if proc.poll() is not None or time.perf_counter() > deadline:
                raise SystemExit(f"node published no state (exit code {proc.poll()})")
            time.sleep(0.05)
        stopping = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
        return ready, time.perf_counter() - stopping
    finally:
        if proc.poll() is None:
            proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    keys = ("daemons cold", "daemons warm", "node cold", "node warm", "node stop", "node warm, unpublished")
    figures: dict[str, list[float]] = {key: [] for key in keys}
    with tempfile.TemporaryDirectory() as scratch:
        for index in range(rounds):
            base_dir, node_dir = Path(scratch, f"base{index}"), Path(scratch, f"node{index}")
            figures["daemons cold"].append(daemons_only(base_dir))
            figures["daemons warm"].append(daemons_only(base_dir))
            ready, stop = node_round(node_dir, until_published=True)
            figures["node cold"].append(ready)
            figures["node stop"].append(stop)
            figures["node warm"].append(node_round(node_dir)[0])
            unpublished_dir = Path(scratch, f"unpublished{index}")
            node_round(unpublished_dir)
            figures["node warm, unpublished"].append(node_round(unpublished_dir)[0])
    median = print_medians(f"median of {rounds} rounds (seconds)", figures)
    print(f"ratio node/daemons cold: {median['node cold'] / median['daemons cold']:.2f}")
    print(f"ratio node/daemons warm: {median['node warm'] / median['daemons warm']:.2f}")
    unpublished = median["node warm, unpublished"] / median["daemons warm"]
    print(f"ratio node/daemons warm, unpublished: {unpublished:.2f}")


if __name__ == "__main__":
    main()
