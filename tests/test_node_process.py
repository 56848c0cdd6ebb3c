"""The node as an operator runs it: `python -m node` with embedded Redis and IPFS.

SIGINT (Ctrl-C) stops the node and both daemons; data survives a restart; a `kill -9` of the
node still leaves no daemon behind, and the next start works.
"""

from __future__ import annotations

import json
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from node.testing import NodeProcess
from tests.helpers import pid_alive, wait_until


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[list[NodeProcess]]:
    started: list[NodeProcess] = []
    yield started
    for node in started:
        node.stop()


def _start(nodes: list[NodeProcess], data_dir: Path) -> NodeProcess:
    node = NodeProcess(data_dir)
    nodes.append(node)
    return node


def _ipfs_add(api: str, data: bytes) -> str:
    boundary = "artdag-test-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        f"{api}/api/v0/add?cid-version=1&raw-leaves=true&pin=true",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return str(json.load(response)["Hash"])


def _ipfs_cat(api: str, cid: str) -> bytes:
    request = urllib.request.Request(f"{api}/api/v0/cat?arg={cid}", method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return bytes(response.read())


def test_ctrl_c_stops_node_and_daemons_and_data_survives(nodes: list[NodeProcess], tmp_path: Path) -> None:
    """SIGINT ends the node and both daemons (exit 0); Redis keys and IPFS blocks survive."""
    first = _start(nodes, tmp_path / "data")
    node_id = first.wait_healthy()["node_id"]
    daemons = first.daemons()
    assert set(daemons) == {"redis", "ipfs"}
    marker = redis.Redis.from_url(daemons["redis"]["url"])
    marker.set("artdag:test:marker", "kept")
    marker.close()
    cid = _ipfs_add(daemons["ipfs"]["url"], b"bytes that must survive a restart")

    first.popen.send_signal(signal.SIGINT)
    assert first.popen.wait(60) == 0
    for daemon in daemons.values():
        assert not pid_alive(daemon["pid"])
    assert not (first.data_dir / "services.json").exists()

    second = _start(nodes, tmp_path / "data")
    assert second.wait_healthy()["node_id"] == node_id
    again = second.daemons()
    restored = redis.Redis.from_url(again["redis"]["url"])
    assert restored.get("artdag:test:marker") == b"kept"
    restored.close()
    assert _ipfs_cat(again["ipfs"]["url"], cid) == b"bytes that must survive a restart"
    second.popen.send_signal(signal.SIGTERM)
    assert second.popen.wait(60) == 0
    for daemon in again.values():
        assert not pid_alive(daemon["pid"])


def test_kill_9_of_the_node_leaves_no_orphans(nodes: list[NodeProcess], tmp_path: Path) -> None:
    """Even a node killed with SIGKILL takes its daemons with it, and the next start works."""
    first = _start(nodes, tmp_path / "data")
    first.wait_healthy()
    daemons = first.daemons()
    first.popen.kill()
    first.popen.wait(30)
    pids = [daemon["pid"] for daemon in daemons.values()]
    wait_until(lambda: not any(pid_alive(pid) for pid in pids), timeout_s=30)

    second = _start(nodes, tmp_path / "data")
    info = second.wait_healthy()
    assert info["redis"]["healthy"] and info["ipfs"]["healthy"]
