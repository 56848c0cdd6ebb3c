"""How long `make run`'s node takes to become healthy, and to stop, against its own daemons.

Baseline, measured in the same run: starting the embedded daemons alone through
``EmbeddedServices`` (no node). The ratio shows what the node adds on top of its daemons.
Cold = a fresh data directory (IPFS repo init and node key creation included); warm = a restart.

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


def node_round(data_dir: Path) -> tuple[float, float]:
    """(seconds to a healthy /health, seconds from SIGINT to exit) for one `python -m node`."""
    port = free_port()
    env = {
        **os.environ,
        "ARTDAG_DATA_DIR": str(data_dir),
        "ARTDAG_PORT": str(port),
        "ARTDAG_LOG_LEVEL": "WARNING",
    }
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "node"], env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = started + 120
        while not _healthy(port):
            if proc.poll() is not None or time.perf_counter() > deadline:
                raise SystemExit(f"node did not become healthy (exit code {proc.poll()})")
            time.sleep(0.02)
        ready = time.perf_counter() - started
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
    figures: dict[str, list[float]] = {
        key: [] for key in ("daemons cold", "daemons warm", "node cold", "node warm", "node stop")
    }
    with tempfile.TemporaryDirectory() as scratch:
        for index in range(rounds):
            base_dir, node_dir = Path(scratch, f"base{index}"), Path(scratch, f"node{index}")
            figures["daemons cold"].append(daemons_only(base_dir))
            figures["daemons warm"].append(daemons_only(base_dir))
            ready, stop = node_round(node_dir)
            figures["node cold"].append(ready)
            figures["node stop"].append(stop)
            figures["node warm"].append(node_round(node_dir)[0])
    median = print_medians(f"median of {rounds} rounds (seconds)", figures)
    print(f"ratio node/daemons cold: {median['node cold'] / median['daemons cold']:.2f}")
    print(f"ratio node/daemons warm: {median['node warm'] / median['daemons warm']:.2f}")


if __name__ == "__main__":
    main()
