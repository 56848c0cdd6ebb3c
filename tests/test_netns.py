"""Zero-config peering off loopback: two `python -m node` processes, each in a network namespace
of its own with its embedded Kubo, share one Redis and find each other's daemon through it.

The test builds its own little network and talks to nothing else: namespace A and B, each with
a veth link to the root namespace (where the test, and Redis, reach the nodes) and a direct
A <-> B link that carries only the IPFS swarm. No forwarding is turned on, so A and B meet only
on that link. Needs root and iproute2 (CI has both); skipped otherwise.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from node.federation.peering import NODE_FIELD, REFRESH_S
from node.services import ManagedProcess, free_port
from node.sync.keys import Keys
from node.testing import NodeProcess
from tests.helpers import wait_until

SWARM_PORT = 4001  # each namespace has its own ports: the usual one is free there
BLOCKS = 80  # 10.77.(3 * block + 0..2).0/24: a block whose root-side subnets are unused is taken
PEERING_S = REFRESH_S + 15  # the first node peers with the second at its next registry round
# Runs inside a namespace: one POST to its loopback Kubo RPC, the JSON answer on stdout.
_RPC = (
    "import sys, urllib.request as u; "
    "o = u.build_opener(u.ProxyHandler({})); "
    "sys.stdout.buffer.write(o.open(u.Request(sys.argv[1], method='POST'), timeout=30).read())"
)


@dataclass(frozen=True)
class Namespace:
    """One network namespace the test made: where the root namespace reaches it, where the
    root namespace is reached from it (Redis), and its address on the A <-> B swarm link."""

    name: str
    host: str
    gateway: str
    swarm: str

    def exec(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]


@dataclass(frozen=True)
class Lab:
    a: Namespace
    b: Namespace


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def _free_block() -> int:
    """A block of 10.77.x.0/24 subnets that no root-namespace address uses (another run's)."""
    used = subprocess.run(
        ["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    start = os.getpid() % BLOCKS
    for step in range(BLOCKS):
        block = (start + step) % BLOCKS
        if not any(f" 10.77.{3 * block + offset}." in used for offset in range(3)):
            return block
    raise RuntimeError("no free 10.77.x.0/24 block for the test network")


def _veth(
    name: str, address: str, *, peer: str, peer_address: str, peer_ns: str, ns: str | None = None
) -> None:
    """A veth pair ``name`` (in ``ns``, or the root namespace) <-> ``peer`` (in ``peer_ns``)."""
    in_ns = ["-n", ns] if ns else []
    _ip(*in_ns, "link", "add", name, "type", "veth", "peer", "name", peer, "netns", peer_ns)
    _ip(*in_ns, "addr", "add", f"{address}/24", "dev", name)
    _ip(*in_ns, "link", "set", name, "up")
    _ip("-n", peer_ns, "addr", "add", f"{peer_address}/24", "dev", peer)
    _ip("-n", peer_ns, "link", "set", peer, "up")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    """Namespaces A and B, each linked to the root namespace, and a direct A <-> B link."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (CI runs the tests as root)")
    if shutil.which("ip") is None:
        pytest.skip("iproute2's `ip` is not on PATH")
    pid = os.getpid()
    block = 3 * _free_block()
    a_net, b_net, swarm_net = (f"10.77.{block + offset}." for offset in range(3))
    a = Namespace(f"artdag-{pid}-a", f"{a_net}2", f"{a_net}1", f"{swarm_net}1")
    b = Namespace(f"artdag-{pid}-b", f"{b_net}2", f"{b_net}1", f"{swarm_net}2")
    root_links = [f"v{pid}ra", f"v{pid}rb"]  # interface names: 15 characters at most
    made: list[str] = []
    try:
        for ns in (a, b):
            try:
                _ip("netns", "add", ns.name)
            except RuntimeError as exc:
                if not made:  # root, but no CAP_SYS_ADMIN (an unprivileged container)
                    pytest.skip(f"cannot create a network namespace: {exc}")
                raise
            made.append(ns.name)
            _ip("-n", ns.name, "link", "set", "lo", "up")
        _veth(root_links[0], a.gateway, peer=f"v{pid}ar", peer_address=a.host, peer_ns=a.name)
        _veth(root_links[1], b.gateway, peer=f"v{pid}br", peer_address=b.host, peer_ns=b.name)
        _veth(f"v{pid}ab", a.swarm, peer=f"v{pid}ba", peer_address=b.swarm, peer_ns=b.name, ns=a.name)
        with pytest.MonkeyPatch.context() as patch:  # urllib in this process: never via a proxy
            patch.setenv("no_proxy", f"{a.host},{b.host}")
            patch.setenv("NO_PROXY", f"{a.host},{b.host}")
            yield Lab(a, b)
    finally:
        for link in root_links:  # gone with its namespace end already, unless that failed
            with contextlib.suppress(RuntimeError):
                _ip("link", "del", link)
        for name in made:
            with contextlib.suppress(RuntimeError):
                _ip("netns", "del", name)


@pytest.fixture(scope="module")
def redis_url(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server in the root namespace, listening only on its ends of the two links;
    the URL node A uses (node B's differs in the host only)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not on PATH")
    where = tmp_path_factory.mktemp("netns-redis")
    port = free_port(lab.a.gateway)
    argv = [
        binary, "--bind", lab.a.gateway, lab.b.gateway, "--port", str(port), "--dir", str(where),
        "--save", "", "--appendonly", "no", "--protected-mode", "no", "--daemonize", "no",
        "--logfile", "",
    ]  # fmt: skip

    def answers() -> bool:
        client = redis.Redis(host=lab.a.gateway, port=port, socket_timeout=1, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    server = ManagedProcess("redis-server", argv, where / "redis.log", answers)
    server.launch()
    try:
        server.wait_ready(30)
        yield f"redis://{lab.a.gateway}:{port}/0"
    finally:
        server.stop()


@dataclass
class Pair:
    a: NodeProcess
    b: NodeProcess
    redis: redis.Redis
    keys: Keys


def _start(lab: Lab, ns: Namespace, where: Path, redis_url: str, prefix: str) -> NodeProcess:
    env = {
        "ARTDAG_REDIS_URL": redis_url.replace(lab.a.gateway, ns.gateway),
        "ARTDAG_REDIS_PREFIX": prefix,
        "ARTDAG_IPFS_SWARM": f"/ip4/{ns.swarm}/tcp/{SWARM_PORT}",
        "ARTDAG_WORKERS": "1",
        "ARTDAG_LOG_LEVEL": "INFO",
    }
    return NodeProcess(where / ns.name, env, host=ns.host, wrapper=ns.exec())


def _stop(node: NodeProcess) -> None:
    if node.popen.poll() is None:
        node.popen.terminate()
        try:
            node.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            node.stop()


@pytest.fixture(scope="module")
def pair(lab: Lab, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """Node A in namespace A, then node B in namespace B once A's daemon is in the registry,
    each with its embedded Kubo: B's first registry round peers B with A at once."""
    where = tmp_path_factory.mktemp("netns-nodes")
    keys = Keys(f"test-{uuid.uuid4().hex[:12]}:")
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    nodes: list[NodeProcess] = []
    try:
        nodes.append(_start(lab, lab.a, where, redis_url, keys.prefix))
        nodes[0].wait_healthy()
        wait_until(lambda: len(_daemons(client.hgetall(keys.daemons))) == 1, timeout_s=30, interval_s=0.1)
        nodes.append(_start(lab, lab.b, where, redis_url, keys.prefix))
        nodes[1].wait_healthy()
        yield Pair(nodes[0], nodes[1], client, keys)
    finally:
        for node in nodes:
            _stop(node)
        client.close()


def kubo(lab: Lab, node: NodeProcess, command: str) -> Any:
    """A Kubo RPC answer from the node's embedded daemon (its API is on loopback in the node's
    namespace, so the request is made there)."""
    ns = lab.a if node.host == lab.a.host else lab.b
    api = node.daemons()["ipfs"]["url"]
    result = subprocess.run(
        ns.exec(sys.executable, "-c", _RPC, f"{api}/api/v0/{command}"),
        capture_output=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout)


def _peer_id(lab: Lab, node: NodeProcess) -> str:
    return str(kubo(lab, node, "id")["ID"])


def _peering_set(lab: Lab, node: NodeProcess) -> set[str]:
    return {str(peer["ID"]) for peer in kubo(lab, node, "swarm/peering/ls").get("Peers") or []}


def test_daemons_register_swarm_link_addresses_and_peer(lab: Lab, pair: Pair) -> None:
    """Each daemon is in the Redis registry with only its swarm-link addresses, and each keeps
    the other in its peering set, with nothing configured but the shared Redis."""
    a_id, b_id = _peer_id(lab, pair.a), _peer_id(lab, pair.b)
    registry = _daemons(pair.redis.hgetall(pair.keys.daemons))
    assert set(registry) == {a_id, b_id}
    for peer_id, ns in ((a_id, lab.a), (b_id, lab.b)):
        addresses = json.loads(registry[peer_id])["addresses"]
        assert addresses == [f"/ip4/{ns.swarm}/tcp/{SWARM_PORT}/p2p/{peer_id}"]
    # B peered with A at its first round (well within one round); A at its next round.
    wait_until(lambda: _peering_set(lab, pair.b) == {a_id}, timeout_s=REFRESH_S / 2, interval_s=0.2)
    wait_until(lambda: _peering_set(lab, pair.a) == {b_id}, timeout_s=PEERING_S, interval_s=0.5)


def test_bytes_uploaded_to_one_node_are_served_by_the_other(lab: Lab, pair: Pair) -> None:
    """Bytes uploaded through node A are served whole by node B, whose daemon fetched them from
    A's over the A <-> B link."""
    data = os.urandom(600_000)  # several blocks, more than the small-content path
    cid = pair.a.upload(data)["cid"]
    with urllib.request.urlopen(f"{pair.b.url}/cache/{cid}", timeout=60) as response:
        assert response.status == 200 and response.read() == data
    a_id = _peer_id(lab, pair.a)
    peers = kubo(lab, pair.b, "swarm/peers").get("Peers") or []
    [address] = [str(peer["Addr"]) for peer in peers if peer["Peer"] == a_id]
    assert address.startswith(f"/ip4/{lab.a.swarm}/tcp/")


def _daemons(registry: dict[Any, Any]) -> dict[Any, Any]:
    """The registry's daemons (its other fields are the nodes' status, for the cluster view)."""
    return {field: value for field, value in registry.items() if not str(field).startswith(NODE_FIELD)}
