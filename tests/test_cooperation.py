"""Several `python -m node` processes on one Redis render one recipe together: claims spread
the steps, nothing runs twice, a killed node's step is taken over, and a step that keeps
failing stops at the attempt limit."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import signal
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
import redis.asyncio as aioredis
from PIL import Image

from node.media.probe import count_frames, probe_file
from node.pixels.effects import EFFECTS
from node.pixels.imaging import png_bytes
from node.pixels.params import normalize_params
from node.services import EmbeddedServices
from node.sync.claims import ClaimBoard
from node.sync.index import StepEntry
from node.sync.keys import Keys
from node.testing import NodeProcess
from tests.helpers import wait_until
from tests.media import pattern_clip

LEASE_S, HEARTBEAT_S = 3.0, 0.3


class Cluster:
    """Nodes sharing the session's Redis (one key prefix) and IPFS daemon."""

    def __init__(
        self, daemons: EmbeddedServices, root: Path, count: int, ipfs_apis: tuple[str, ...] = (), **env: str
    ) -> None:
        self.prefix = f"test-{uuid.uuid4().hex[:12]}:"
        shared = {
            "ARTDAG_REDIS_URL": str(daemons.settings.redis_url),
            "ARTDAG_IPFS_API": str(daemons.settings.ipfs_api),
            "ARTDAG_REDIS_PREFIX": self.prefix,
            "ARTDAG_WORKERS": "1",
            "ARTDAG_LEASE": str(LEASE_S),
            "ARTDAG_HEARTBEAT": str(HEARTBEAT_S),
            "ARTDAG_LOG_LEVEL": "INFO",
            **env,
        }
        apis = ipfs_apis or (str(daemons.settings.ipfs_api),)
        self.nodes = [
            NodeProcess(root / f"node{index}", {**shared, "ARTDAG_IPFS_API": apis[index % len(apis)]})
            for index in range(count)
        ]
        self.ids = {node.wait_healthy()["node_id"]: node for node in self.nodes}
        assert daemons.settings.redis_url is not None
        self.redis_url = daemons.settings.redis_url
        self.redis = redis.Redis.from_url(daemons.settings.redis_url, decode_responses=True)

    def close(self) -> None:
        for node in self.nodes:
            if node.popen.poll() is None:
                node.popen.terminate()
            node.popen.wait(timeout=30)
        for key in self.redis.scan_iter(match=f"{self.prefix}*", count=1000):
            self.redis.delete(key)
        self.redis.close()

    def finished(self, node: NodeProcess, run_id: str, timeout_s: float = 120) -> dict[str, Any]:
        def final() -> dict[str, Any] | None:
            record: dict[str, Any] = node.call("GET", f"/runs/{run_id}")
            return record if record["status"] in ("completed", "failed", "cancelled") else None

        result: dict[str, Any] = wait_until(final, timeout_s=timeout_s, interval_s=0.2)
        return result

    def events(self, run_id: str) -> list[dict[str, Any]]:
        entries: Any = self.redis.xrange(f"{self.prefix}events:{run_id}")
        return [{"kind": fields["kind"], **json.loads(fields["data"])} for _, fields in entries]


@pytest.fixture
def three(daemons: EmbeddedServices, tmp_path: Path) -> Iterator[Cluster]:
    cluster = Cluster(daemons, tmp_path, 3)
    yield cluster
    cluster.close()


def wide_recipe(width: int) -> str:
    """``width`` independent effects on one clip, then a SEQUENCE of all of them."""
    nodes = ["    - {id: clip, type: SOURCE, config: {input: true}}"]
    for index in range(width):
        factor = round(0.5 + index / width, 3)
        nodes.append(
            f"    - {{id: e{index}, type: EFFECT, "
            f"config: {{effect: brightness, factor: {factor}}}, inputs: [clip]}}"
        )
    names = ", ".join(f"e{index}" for index in range(width))
    nodes.append(f"    - {{id: out, type: SEQUENCE, inputs: [{names}]}}")
    return "name: wide\ndag:\n  nodes:\n" + "\n".join(nodes) + "\n  output: out\n"


def ipfs_rpc(api: str, command: str, arg: str = "") -> Any:
    with urllib.request.urlopen(_rpc(api, command, arg), timeout=30) as response:
        return json.load(response)


def ipfs_cat(api: str, cid: str) -> bytes:
    with urllib.request.urlopen(_rpc(api, "cat", cid), timeout=60) as response:
        data: bytes = response.read()
        return data


def _rpc(api: str, command: str, arg: str) -> urllib.request.Request:
    query = f"?arg={urllib.parse.quote(arg, safe='')}" if arg else ""
    return urllib.request.Request(f"{api}/api/v0/{command}{query}", method="POST")


@pytest.fixture
def three_on_two_daemons(
    daemons: EmbeddedServices, own_ipfs: EmbeddedServices, tmp_path: Path
) -> Iterator[tuple[Cluster, str]]:
    """Three nodes on one Redis and two IPFS daemons (nodes 0 and 2 on the session's, node 1
    on its own), which the nodes peer through their registry; the second daemon's API URL."""
    first_api, second_api = str(daemons.settings.ipfs_api), str(own_ipfs.settings.ipfs_api)
    cluster = Cluster(daemons, tmp_path, 3, ipfs_apis=(first_api, second_api))
    yield cluster, second_api
    cluster.close()


def test_three_nodes_share_a_wide_recipe(three_on_two_daemons: tuple[Cluster, str], tmp_path: Path) -> None:
    """12 independent steps and the SEQUENCE tree above them, submitted to one node, three
    nodes on two IPFS daemons: every node computes some, each reading the others' outputs by
    CID; each step is executed once and reported once; every node shows the same run; the
    output fetched through the other daemon has the bytes the run recorded."""
    three, second_api = three_on_two_daemons
    first = three.nodes[0]
    clip = first.upload(pattern_clip(tmp_path / "clip.mp4", seconds=4.0).read_bytes())
    run_id = first.start_run(wide_recipe(12), [clip["cid"]])
    record = three.finished(first, run_id)
    assert record["status"] == "completed", record["error"]
    events = three.events(run_id)
    started = Counter(event["cache_id"] for event in events if event["kind"] == "step_started")
    finished = Counter(event["cache_id"] for event in events if event["kind"] == "step_finished")
    assert len(finished) == 12 + 11  # the effects and the pairwise SEQUENCE steps
    assert set(started.values()) == {1} and set(finished.values()) == {1}  # nothing ran twice
    percents = [event["percent"] for event in events if event["kind"] == "progress"]
    assert percents == sorted(percents) and percents[-1] == 100  # only growing, across nodes
    assert (
        len([event for event in events if event["kind"] == "progress" and "step" not in event]) == 23
    )  # once each
    workers = Counter(event["node"] for event in events if event["kind"] == "step_finished")
    assert set(workers) == set(three.ids), workers  # every node computed some
    views = [node.call("GET", f"/runs/{run_id}") for node in three.nodes]
    assert views[0] == views[1] == views[2]
    assert views[0]["output"]["media_type"] == "video/mp4"
    fetched = tmp_path / "through-second.mp4"
    fetched.write_bytes(ipfs_cat(second_api, record["output"]["cid"]))
    assert hashlib.sha3_256(fetched.read_bytes()).hexdigest() == record["output"]["content_id"]
    assert count_frames(fetched, probe_file(fetched)) == 12 * 4 * 25  # twelve 4 s clips at 25 fps


SLOW = (
    "name: slow\ndag:\n  nodes:\n    - {id: src, type: SOURCE, config: {input: true}}\n"
    "    - {id: out, type: EFFECT, config: {effect: blur, sigma: 40}, inputs: [src]}\n  output: out\n"
)
BIG = np.random.default_rng(8).integers(0, 256, (900, 900, 3), dtype=np.uint8)


def blurred(pixels: np.ndarray) -> np.ndarray:
    params, _ = normalize_params(EFFECTS["blur"].params, {"sigma": 40})
    apply = EFFECTS["blur"].apply
    assert apply is not None
    return apply(pixels, params)


def holder(cluster: Cluster, run_id: str) -> tuple[str, str]:
    """(cache id, token) of the run's step once some node holds its claim."""

    def claimed() -> tuple[str, str] | None:
        for event in cluster.events(run_id):
            if event["kind"] == "step_started":
                token = cluster.redis.get(f"{cluster.prefix}claim:{event['cache_id']}")
                if token:
                    return str(event["cache_id"]), str(token)
        return None

    found: tuple[str, str] = wait_until(claimed, timeout_s=60, interval_s=0.05)
    return found


def slow_run_held(cluster: Cluster) -> tuple[str, str, str, NodeProcess]:
    """A slow one-step run started on the first node, once some node holds its step's claim:
    (run id, cache id, claim token, the node holding it)."""
    first = cluster.nodes[0]
    run_id = first.start_run(SLOW, [first.upload(png_bytes(BIG))["cid"]])
    cache_id, token = holder(cluster, run_id)
    return run_id, cache_id, token, cluster.ids[token.split(":")[0]]


def test_a_killed_node_s_step_is_taken_over(three: Cluster) -> None:
    """kill -9 the node computing the step: after the lease another node takes it over, the
    run completes with the right bytes, and the dead node's token commits nothing."""
    run_id, cache_id, token, victim = slow_run_held(three)
    os.kill(victim.pid, signal.SIGKILL)
    survivor = next(node for node in three.nodes if node is not victim)
    record = three.finished(survivor, run_id)
    assert record["status"] == "completed", record["error"]
    finishers = [event["node"] for event in three.events(run_id) if event["kind"] == "step_finished"]
    assert len(finishers) == 1 and three.ids[finishers[0]] is not victim
    with urllib.request.urlopen(f"{survivor.url}/cache/{record['output']['cid']}") as response:
        output = np.asarray(Image.open(io.BytesIO(response.read())).convert("RGB"))
    assert np.array_equal(output, blurred(BIG))
    assert not asyncio.run(stale_commit(three, cache_id, token))  # the dead node's token: refused


async def stale_commit(cluster: Cluster, cache_id: str, token: str) -> bool:
    """Try to commit a result for the step with ``token``, as the dead node would."""
    client = aioredis.Redis.from_url(str(cluster.redis_url))
    try:
        board = ClaimBoard(
            client, Keys(cluster.prefix), token.split(":", maxsplit=1)[0], lease_s=LEASE_S, max_attempts=3
        )
        return await board.commit(StepEntry(cache_id, "bafkreistale", "e" * 64, 1, "image/png"), token)
    finally:
        await client.aclose()


def test_a_step_that_keeps_failing_stops_at_the_attempt_limit(three: Cluster) -> None:
    """Bytes that are no image: every attempt fails; after 3 the run fails with the reason."""
    first = three.nodes[0]
    text = first.upload(b"\x89PNG\r\n\x1a\n" + b"not the rest of a PNG" * 10)  # sniffed as PNG
    recipe = SLOW.replace("blur, sigma: 40", "invert")
    run_id = first.start_run(recipe, [text["cid"]])
    record = three.finished(first, run_id)
    assert record["status"] == "failed"
    assert "not an image this node reads" in record["error"]
    started = [event for event in three.events(run_id) if event["kind"] == "step_started"]
    assert len(started) == 3


def test_a_paused_owner_loses_its_lease_and_its_late_commit_is_fenced(three: Cluster) -> None:
    """SIGSTOP the node computing the step: its heartbeats stop, another node takes the step
    over after the lease; when the paused node wakes, its claim is gone, so it writes nothing."""
    run_id, cache_id, token, paused = slow_run_held(three)
    first = three.nodes[0]
    os.kill(paused.pid, signal.SIGSTOP)
    try:

        def taken_over() -> str | None:
            current = three.redis.get(f"{three.prefix}claim:{cache_id}")
            return str(current) if current and current != token else None

        new_token = wait_until(taken_over, timeout_s=60, interval_s=0.1)
        assert not new_token.startswith(token.split(":")[0])
    finally:
        os.kill(paused.pid, signal.SIGCONT)
    record = three.finished(first if first is not paused else three.nodes[1], run_id)
    assert record["status"] == "completed", record["error"]
    finishers = [event["node"] for event in three.events(run_id) if event["kind"] == "step_finished"]
    assert len(finishers) == 1 and three.ids[finishers[0]] is not paused  # the late one was fenced
