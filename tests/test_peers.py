"""Nodes that share no Redis, on two swarm-connected IPFS daemons, configured as peers: a step
computed on one is fetched by the other, not executed; updates keep flowing; an untrusted
node's steps are ignored; a forged state is rejected; a node whose Redis was emptied comes
back from its own published state. Every part is a real process."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from aiohttp import ClientSession

from node.config import Settings
from node.errors import NodeError
from node.federation.state_document import STATE_TOPIC, read_state
from node.identity import load_or_create
from node.pixels.imaging import png_bytes
from node.records import jcs
from node.services import EmbeddedServices, free_port
from node.store.ipfs import IpfsClient
from node.testing import NodeProcess
from tests.helpers import poll_async, wait_until
from tests.test_cooperation import ipfs_cat

CHAIN = """
name: chain
dag:
  nodes:
    - {id: src, type: SOURCE, config: {input: true}}
    - {id: soft, type: EFFECT, config: {effect: blur, sigma: 1.5}, inputs: [src]}
    - {id: neg, type: EFFECT, config: {effect: invert}, inputs: [soft]}
    - {id: out, type: EFFECT, config: {effect: grayscale}, inputs: [neg]}
  output: out
"""
FINAL = ("completed", "failed", "cancelled")


def one_step(factor: float) -> str:
    return (
        "name: bright\ndag:\n  nodes:\n    - {id: src, type: SOURCE, config: {input: true}}\n"
        f"    - {{id: out, type: EFFECT, config: {{effect: brightness, factor: {factor}}}, inputs: [src]}}\n"
        "  output: out\n"
    )


def image(seed: int) -> bytes:
    return png_bytes(np.random.default_rng(seed).integers(0, 256, (24, 24, 3), dtype=np.uint8))


@dataclass
class Peers:
    """A (on the session's IPFS daemon) trusts B; B (on a second daemon) trusts A and C; C (on
    the second daemon too) trusts nobody, and A does not trust C. Each has a Redis of its own."""

    a: NodeProcess
    b: NodeProcess
    c: NodeProcess
    ids: dict[str, str]  # "a" | "b" | "c" -> node id
    first_api: str
    second_api: str


def get(node: NodeProcess, path: str) -> Any:
    with urllib.request.urlopen(f"{node.url}{path}", timeout=30) as response:
        return json.load(response)


def state_sequence(node: NodeProcess) -> int:
    try:
        return int(get(node, "/state")["sequence"])
    except urllib.error.HTTPError:
        return 0


def peer_status(node: NodeProcess, node_id: str) -> dict[str, Any]:
    [found] = [item for item in get(node, "/peers")["items"] if item["node_id"] == node_id]
    return dict(found)


def finished(node: NodeProcess, run_id: str) -> dict[str, Any]:
    def final() -> dict[str, Any] | None:
        record: dict[str, Any] = get(node, f"/runs/{run_id}")
        return record if record["status"] in FINAL else None

    result: dict[str, Any] = wait_until(final, timeout_s=120, interval_s=0.1)
    assert result["status"] == "completed", result
    return result


def redis_of(node: NodeProcess) -> redis.Redis:
    """A client of the node's own embedded Redis (keys under ``artdag:``)."""
    return redis.Redis.from_url(node.daemons()["redis"]["url"], decode_responses=True)


def peer_steps_held(node: NodeProcess, record: dict[str, Any]) -> set[str]:
    """Which of the run's steps ``node`` holds as a peer's computed step."""
    client = redis_of(node)
    try:
        return {
            name
            for name, step in record["steps"].items()
            if client.exists(f"artdag:peerstep:{step['cache_id']}")
        }
    finally:
        client.close()


def run(node: NodeProcess, recipe: str, data: bytes) -> dict[str, Any]:
    return finished(node, node.start_run(recipe, [node.upload(data)["cid"]]))


def caught_up(
    follower: NodeProcess, leader: NodeProcess, leader_id: str, record: dict[str, Any], api: str
) -> int:
    """Wait until ``leader`` published a state whose step index lists the steps of ``record``
    (a run of its) and ``follower`` merged it, or a newer one; that state's sequence."""
    wanted = {step["cache_id"] for step in record["steps"].values()}

    def published() -> int | None:
        state = get(leader, "/state")
        steps = json.loads(ipfs_cat(api, state["steps"]))["steps"]
        return int(state["sequence"]) if wanted <= {step["cache_id"] for step in steps} else None

    sequence: int = wait_until(published, timeout_s=30)
    wait_until(lambda: (peer_status(follower, leader_id)["sequence"] or 0) >= sequence, timeout_s=30)
    return sequence


def lists_run(node: NodeProcess, api: str, record: dict[str, Any]) -> int | None:
    """The sequence of the node's published state if its runs index has ``record`` as it is."""
    try:
        state = get(node, "/state")
    except urllib.error.HTTPError:
        return None
    runs = json.loads(ipfs_cat(api, state["runs"]))["runs"]
    listed = [item["run"] for item in runs if item["run"]["run_id"] == record["run_id"]]
    return int(state["sequence"]) if listed and listed[0]["status"] == record["status"] else None


@pytest.fixture(scope="module")
def peers(daemons: EmbeddedServices, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peers]:
    root = tmp_path_factory.mktemp("peers")
    second = EmbeddedServices(Settings(data_dir=root / "ipfs2", redis_url=daemons.settings.redis_url))
    with second:
        # The two daemons are not peered by hand: each node peers with its trusted peers'
        # daemons from the addresses in their signed states.
        first_api, second_api = str(daemons.settings.ipfs_api), str(second.settings.ipfs_api)
        ids = {name: load_or_create(root / name).node_id for name in "abc"}  # keys made before start
        ports = {name: free_port() for name in "abc"}
        url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        common = {"ARTDAG_STATE_DEBOUNCE": "0.2", "ARTDAG_PEER_POLL": "1", "ARTDAG_WORKERS": "1"}
        env = {
            "a": {"ARTDAG_IPFS_API": first_api, "ARTDAG_PEERS": f"{ids['b']}@{url['b']}"},
            "b": {
                "ARTDAG_IPFS_API": second_api,
                "ARTDAG_PEERS": f"{ids['a']}@{url['a']},{ids['c']}@{url['c']}",
            },
            "c": {"ARTDAG_IPFS_API": second_api},
        }
        nodes = {name: NodeProcess(root / name, {**common, **env[name]}, port=ports[name]) for name in "abc"}
        try:
            for node in nodes.values():
                node.wait_healthy()
            yield Peers(nodes["a"], nodes["b"], nodes["c"], ids, first_api, second_api)
        finally:
            for node in nodes.values():
                node.popen.terminate()
            for node in nodes.values():
                node.popen.wait(timeout=30)


def test_a_step_computed_on_one_peer_is_fetched_not_executed_by_the_other(peers: Peers) -> None:
    """A renders a three-step chain; B, with its own Redis and IPFS daemon, renders the same
    recipe on the same bytes and executes 0 steps: every step is fetched by CID from A's
    results (same output CID), and B's provenance verifies, citing A's signed receipts."""
    done_on_a = run(peers.a, CHAIN, image(1))
    caught_up(peers.b, peers.a, peers.ids["a"], done_on_a, peers.first_api)
    done_on_b = run(peers.b, CHAIN, image(1))
    assert {name: step["state"] for name, step in done_on_b["steps"].items()} == dict.fromkeys(
        ("soft", "neg", "out"), "cached"
    )
    assert done_on_b["output"]["cid"] == done_on_a["output"]["cid"]
    assert peer_status(peers.b, peers.ids["a"])["error"] is None
    trust = "&".join(f"trust={peers.ids[name]}" for name in "ab")
    verdict = get(peers.b, f"/provenance/{done_on_b['provenance_cid']}/verify?{trust}")
    assert verdict["ok"], verdict["problems"]
    receipts = get(peers.b, f"/runs/{done_on_b['run_id']}/provenance")["record"]["receipts"]
    signers = {get(peers.b, f"/provenance/{cid}")["record"]["signer"] for cid in receipts}
    assert signers == {peers.ids["a"]}


def test_updates_keep_flowing_through_five_state_changes(peers: Peers) -> None:
    """Five successive renders on B: after each, A merges B's newer state, and holds the new
    step as B's computed step."""
    for change in range(5):
        before = state_sequence(peers.b)
        steps_before = peer_status(peers.a, peers.ids["b"])["steps"]
        done = run(peers.b, one_step(1.1 + change / 10), image(100))
        sequence = caught_up(peers.a, peers.b, peers.ids["b"], done, peers.second_api)
        status = peer_status(peers.a, peers.ids["b"])
        assert status["sequence"] >= sequence > before
        assert status["steps"] >= steps_before + 1, (change, status)
        assert status["source"] in ("pubsub", peers.b.url)
        assert peer_steps_held(peers.a, done) == {"out"}


async def test_an_untrusted_node_s_steps_are_ignored(peers: Peers) -> None:
    """C announces its state where A hears it (checked on A's daemon), but A trusts only B:
    A renders C's recipe itself, and lists no peer but B."""
    async with ClientSession() as session:
        listener = IpfsClient(peers.first_api, session)
        heard: list[dict[str, Any]] = []

        async def listen() -> None:
            async for message in listener.pubsub_sub(STATE_TOPIC):
                heard.append(json.loads(message.data) if message.data.startswith(b"{") else {"probe": True})

        listening = asyncio.create_task(listen())
        try:
            probe = IpfsClient(peers.second_api, session)

            async def subscribed() -> bool:  # a probe from the other daemon arrives: listening
                with contextlib.suppress(NodeError):  # no subscriber known there yet
                    await probe.pubsub_pub(STATE_TOPIC, b"probe")
                return any(item.get("probe") for item in heard)

            await poll_async(subscribed)
            done_on_c = await asyncio.to_thread(run, peers.c, CHAIN, image(2))

            async def c_heard() -> bool:
                sequence = await asyncio.to_thread(lambda: lists_run(peers.c, peers.second_api, done_on_c))
                signed = [item["sequence"] for item in heard if item.get("signer") == peers.ids["c"]]
                return bool(sequence and signed and max(signed) >= sequence)

            await poll_async(c_heard)
        finally:
            listening.cancel()
            await asyncio.gather(listening, return_exceptions=True)
    done_on_a = await asyncio.to_thread(run, peers.a, CHAIN, image(2))
    assert {step["state"] for step in done_on_a["steps"].values()} == {"done"}
    assert {step["node"] for step in done_on_a["steps"].values()} == {peers.ids["a"]}
    assert done_on_a["output"]["cid"] == done_on_c["output"]["cid"]  # the same bytes, computed twice
    assert [item["node_id"] for item in get(peers.a, "/peers")["items"]] == [peers.ids["b"]]


def published_steps(node: NodeProcess, api: str, record: dict[str, Any]) -> list[dict[str, Any]]:
    """The entries of the run's steps in the node's published step index."""
    wanted = {step["cache_id"] for step in record["steps"].values()}
    steps = json.loads(ipfs_cat(api, get(node, "/state")["steps"]))["steps"]
    return [step for step in steps if step["cache_id"] in wanted]


def test_trust_is_not_transitive(peers: Peers) -> None:
    """B trusts C and fetches C's steps; B's published index then lists them, computed by C,
    and A merges B's state, but not those entries: A does not trust C, and computes them."""
    done_on_c = run(peers.c, CHAIN, image(4))
    caught_up(peers.b, peers.c, peers.ids["c"], done_on_c, peers.second_api)
    done_on_b = run(peers.b, CHAIN, image(4))
    assert {step["state"] for step in done_on_b["steps"].values()} == {"cached"}
    caught_up(peers.a, peers.b, peers.ids["b"], done_on_b, peers.second_api)
    listed = published_steps(peers.b, peers.second_api, done_on_b)
    assert len(listed) == 3 and {step["node"] for step in listed} == {peers.ids["c"]}
    assert peer_steps_held(peers.a, done_on_b) == set()
    done_on_a = run(peers.a, CHAIN, image(4))
    assert {step["state"] for step in done_on_a["steps"].values()} == {"done"}
    assert done_on_a["output"]["cid"] == done_on_c["output"]["cid"]


def test_an_entry_its_receipt_does_not_vouch_for_is_refused_and_forgotten(peers: Peers) -> None:
    """A trusted peer's index that lies (entries said to be computed by B, whose receipts C
    signed) does not make A skip the work: A checks each receipt, computes the steps itself,
    and forgets the entries."""
    done_on_c = run(peers.c, CHAIN, image(7))
    caught_up(peers.b, peers.c, peers.ids["c"], done_on_c, peers.second_api)
    done_on_b = run(peers.b, CHAIN, image(7))
    caught_up(peers.a, peers.b, peers.ids["b"], done_on_b, peers.second_api)
    client = redis_of(peers.a)
    try:
        for step in published_steps(peers.b, peers.second_api, done_on_b):
            lie: dict[Any, Any] = {key: str(value) for key, value in step.items() if key != "cache_id"}
            client.hset(
                f"artdag:peerstep:{step['cache_id']}",
                mapping={**lie, "node": peers.ids["b"], "peer": peers.ids["b"]},
            )
    finally:
        client.close()
    assert peer_steps_held(peers.a, done_on_b) == {"soft", "neg", "out"}
    done_on_a = run(peers.a, CHAIN, image(7))
    assert {step["state"] for step in done_on_a["steps"].values()} == {"done"}
    assert peer_steps_held(peers.a, done_on_a) == set()


def test_a_forged_state_is_rejected(peers: Peers) -> None:
    """A state naming A, with a far higher sequence, but signed with another key, arrives at B
    over pubsub: B refuses it, records why under A, and keeps A's real sequence."""
    real = state_sequence(peers.a)
    wait_until(lambda: (peer_status(peers.b, peers.ids["a"])["sequence"] or 0) >= real, timeout_s=30)
    forger = load_or_create(peers.c.data_dir)
    record = json.loads(urllib.request.urlopen(f"{peers.a.url}/state").read())
    record.update(sequence=real + 10**9)
    record.pop("signature")
    record["signature"] = base64.b64encode(forger.sign(jcs(record))).decode()
    forged = jcs(record)
    with pytest.raises(Exception, match="signature does not match"):
        read_state(forged, {peers.ids["a"]})

    def rejected() -> dict[str, Any] | None:
        _publish(peers.first_api, forged)  # again until heard: B may still be subscribing
        status = peer_status(peers.b, peers.ids["a"])
        return status if status["error"] and "rejected" in status["error"] else None

    status = wait_until(rejected, timeout_s=30, interval_s=0.5)
    assert status["error"] == "state from pubsub rejected: signature does not match the record"
    assert status["sequence"] < real + 10**9


def _publish(api: str, data: bytes) -> None:
    topic = "u" + base64.urlsafe_b64encode(STATE_TOPIC.encode()).decode().rstrip("=")
    boundary = "forgedstate"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="data"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        f"{api}/api/v0/pubsub/pub?arg={topic}",
        data=body,
        method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    urllib.request.urlopen(request, timeout=30).close()


class LoneNode:
    """A node with a Redis of its own on the session's IPFS daemon, which a test may restart."""

    def __init__(self, daemons: EmbeddedServices, data_dir: Path) -> None:
        self.api = str(daemons.settings.ipfs_api)
        self.env = {"ARTDAG_IPFS_API": self.api, "ARTDAG_STATE_DEBOUNCE": "0.2"}
        self.data_dir = data_dir
        self.node = NodeProcess(data_dir, self.env)
        self.node.wait_healthy()

    def render_published(self, seed: int) -> tuple[dict[str, Any], int]:
        """Render CHAIN on a new image; the run and the sequence of a state that lists it."""
        done = run(self.node, CHAIN, image(seed))
        return done, wait_until(lambda: lists_run(self.node, self.api, done), timeout_s=30)

    def stop(self) -> None:
        self.node.popen.terminate()
        self.node.popen.wait(timeout=30)

    def start(self) -> None:
        self.node = NodeProcess(self.data_dir, self.env, port=self.node.port)
        self.node.wait_healthy()


@pytest.fixture
def lone(daemons: EmbeddedServices, tmp_path: Path) -> Iterator[LoneNode]:
    started = LoneNode(daemons, tmp_path / "node")
    try:
        yield started
    finally:
        started.stop()


def test_a_node_whose_redis_was_emptied_comes_back_from_its_state(lone: LoneNode) -> None:
    """A node renders, publishes, stops; its Redis database and its state file are deleted;
    restarted, it finds its last state through its IPNS name, lists the run with its output
    and serves it, and renders the recipe again without executing a step: runs, content and
    step index came back."""
    done, last = lone.render_published(3)
    lone.stop()
    shutil.rmtree(lone.data_dir / "redis")  # the embedded Redis's whole database
    (lone.data_dir / "state.json").unlink()  # so only IPNS knows the last state
    lone.start()
    back = get(lone.node, f"/runs/{done['run_id']}")
    assert (back["status"], back["output"], back["provenance_cid"]) == (
        "completed", done["output"], done["provenance_cid"]
    )  # fmt: skip
    assert [item["run_id"] for item in get(lone.node, "/runs")["items"]] == [done["run_id"]]
    with urllib.request.urlopen(f"{lone.node.url}/cache/{done['output']['cid']}") as response:
        assert response.status == 200
    again = run(lone.node, CHAIN, image(3))
    assert {step["state"] for step in again["steps"].values()} == {"cached"}
    assert wait_until(lambda: state_sequence(lone.node) > last, timeout_s=30)


def test_a_redis_emptied_under_a_running_node_is_recovered_before_it_publishes(lone: LoneNode) -> None:
    """The node's Redis is flushed while the node runs; the next change makes it publish, and
    it first restores its last state (from its state file): the run is back, without a restart,
    and the state it then publishes still lists it."""
    done, last = lone.render_published(5)
    client = redis_of(lone.node)
    try:
        client.flushall()
    finally:
        client.close()
    lone.node.upload(image(6))  # a change: the node publishes, recovering first
    wait_until(lambda: (lists_run(lone.node, lone.api, done) or 0) > last, timeout_s=30)
    assert get(lone.node, f"/runs/{done['run_id']}")["output"] == done["output"]
