"""The node's published state: the signed document, its indexes, GET /identity, /state and
/peers, and the indexes written out of Redis and read back in."""

from __future__ import annotations

import base64
import functools
import json
import os
import stat
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np
import pytest
import redis.asyncio as aioredis
from aiohttp import ClientSession
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node.config import Settings
from node.executor.run_manager import finish_id
from node.federation.peers import Peer, PeerSync
from node.federation.publisher import STATE_FILE, IpnsNames, StatePublisher
from node.federation.recovery import RecoveryFailed, recover
from node.federation.snapshot import Snapshot, read_index
from node.federation.state_document import INDEXES, NodeState, read_state, sign_state
from node.http.appkeys import NODE
from node.identity import NodeIdentity, load_or_create
from node.pixels.imaging import png_bytes
from node.private_files import replace_private_file
from node.records import RecordError, jcs
from node.store.cid import leaf_cid
from node.store.ipfs import IpfsClient
from node.sync.keys import Keys
from tests.helpers import Client, NodeClient, closed_port, poll_async, sse, start, upload

PIXELS = np.random.default_rng(9).integers(0, 256, (16, 20, 3), dtype=np.uint8)
CID = "bafkreiaq6af74crxbb472owuqlbli25i64kimuqzeet2zqccrke2ca3gvm"


def identity() -> NodeIdentity:
    return NodeIdentity(Ed25519PrivateKey.generate())


def signed(node: NodeIdentity, sequence: int = 7) -> bytes:
    return sign_state(
        node,
        sequence=sequence,
        url="http://127.0.0.1:8100",
        ipns_name="k51example",
        peer_id="12D3example",
        indexes={"runs": CID, "steps": CID, "contents": CID},
        published="2026-11-23T00:00:00Z",
    )


def test_a_signed_state_reads_back() -> None:
    """A state document signed by a trusted node gives its sequence, URL and index CIDs."""
    node = identity()
    state = read_state(signed(node), {node.node_id})
    assert (state.node_id, state.sequence, state.url) == (node.node_id, 7, "http://127.0.0.1:8100")
    assert state.indexes == {"runs": CID, "steps": CID, "contents": CID}


def _resigned_by(other: NodeIdentity, claimed: str, **changes: Any) -> bytes:
    """A state naming ``claimed`` as its node and signer, signed with ``other``'s key."""
    record = json.loads(signed(other))
    record.update(changes, node_id=claimed, signer=claimed)
    record.pop("signature")
    record["signature"] = base64.b64encode(other.sign(jcs(record))).decode()
    return jcs(record)


def test_forged_and_tampered_states_are_refused() -> None:
    """A state with a raised sequence, a signature by another key, another node's key inside,
    an untrusted signer or the wrong kind is refused, saying why."""
    node, other = identity(), identity()
    tampered = json.loads(signed(node))
    tampered["sequence"] = 8
    cases = {
        "signature does not match": jcs(tampered),
        "signature does not match ": _resigned_by(other, node.node_id),
        "not trusted": signed(other),
        "not a version 1 state": _kind_changed(node),
        "not JSON": b"{nope",
    }
    for reason, data in cases.items():
        with pytest.raises(RecordError, match=reason.strip()):
            read_state(data, {node.node_id})


def _kind_changed(node: NodeIdentity) -> bytes:
    record = json.loads(signed(node))
    record.pop("signature")
    record["kind"] = "artdag/plan"
    record["signature"] = base64.b64encode(node.sign(jcs(record))).decode()
    return jcs(record)


@pytest.fixture
def quick(settings: Settings) -> Settings:
    return settings.replace(state_debounce=0.1)


@pytest.fixture
async def quick_client(quick: Settings, node_client: NodeClient) -> AsyncIterator[Client]:
    yield await node_client(quick)


@pytest.fixture
def quick_auth(quick_client: Client, quick: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {(quick.data_dir / 'admin_token').read_text().strip()}"}


@pytest.fixture
async def ipfs(quick: Settings) -> AsyncIterator[IpfsClient]:
    assert quick.ipfs_api is not None
    async with ClientSession() as session:
        yield IpfsClient(quick.ipfs_api, session)


async def published(client: Client, accept: Callable[[NodeState], Awaitable[bool]]) -> NodeState:
    """The node's state from GET /state, once one is published that ``accept`` takes."""

    async def ready() -> NodeState | None:
        response = await client.get("/state")
        if response.status != 200:
            return None
        state = read_state(await response.read(), {client.app[NODE].identity.node_id})
        return state if await accept(state) else None

    found: NodeState = await poll_async(ready)
    return found


async def index_of(ipfs: IpfsClient, state: NodeState, name: str) -> dict[str, Any]:
    return read_index(name, await ipfs.cat_all(state.indexes[name], 10**7))


async def test_identity_names_the_node_its_key_and_ipns_name(quick_client: Client, ipfs: IpfsClient) -> None:
    """GET /identity: the node id, its public key, the IPNS name the daemon holds for the node's
    key, and the daemon's peer id."""
    answer = await (await quick_client.get("/identity")).json()
    node = quick_client.app[NODE].identity
    assert answer["node_id"] == node.node_id
    assert base64.b64decode(answer["public_key"]) == node.public_key_bytes
    assert (await ipfs.key_ls())[f"artdag-{node.node_id}"] == answer["ipns_name"]
    assert answer["peer_id"] == (await ipfs.id())["ID"]


async def test_a_run_appears_in_the_published_state(
    quick_client: Client, quick_auth: dict[str, str], ipfs: IpfsClient, quick: Settings
) -> None:
    """After a run, GET /state serves a newer signed state whose indexes (read from IPFS) list
    the run, its step and its output; the IPNS name points at it; the old state is unpinned;
    the data directory keeps a copy only the node's user can read."""
    first = await published(quick_client, _anything)
    image = await upload(quick_client, quick_auth, png_bytes(PIXELS))
    run = await start(quick_client, quick_auth, {"recipe": "invert", "inputs": [image["cid"]]})
    await sse(quick_client, run["run_id"])
    record = await (await quick_client.get(f"/runs/{run['run_id']}")).json()

    async def lists_the_run(state: NodeState) -> bool:
        """The run completed, and its finish recorded (committed just after the status)."""
        runs = (await index_of(ipfs, state, "runs"))["runs"]
        completed = any(
            item["run"]["run_id"] == run["run_id"] and item["run"]["status"] == "completed" for item in runs
        )
        return completed and len((await index_of(ipfs, state, "steps"))["steps"]) == 2

    state = await published(quick_client, lists_the_run)
    assert state.sequence > first.sequence
    steps = (await index_of(ipfs, state, "steps"))["steps"]
    computed = [step["cid"] for step in steps if step["receipt_cid"]]  # the other: finishing the run
    assert computed == [record["output"]["cid"]]
    contents = (await index_of(ipfs, state, "contents"))["contents"]
    assert {image["content_id"], record["output"]["content_id"]} <= {item["content_id"] for item in contents}
    ipns_name = (await (await quick_client.get("/identity")).json())["ipns_name"]
    pins = await ipfs.pin_ls()
    assert await ipfs.name_resolve(ipns_name) == leaf_cid(state.data)
    assert {leaf_cid(state.data), *state.indexes.values()} <= pins
    assert leaf_cid(first.data) not in pins and first.indexes["runs"] not in pins
    kept = quick.data_dir / STATE_FILE
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert read_state(kept.read_bytes(), {state.node_id}).sequence >= state.sequence


async def _anything(state: NodeState) -> bool:
    return True


async def test_indexes_read_back_into_an_empty_database(
    quick_client: Client, quick_auth: dict[str, str], redis_client: aioredis.Redis, quick: Settings
) -> None:
    """The three index documents, read into another key space, give the same documents back:
    runs, plans, steps, content with owners and runs, assets and recipes."""
    image = await upload(quick_client, quick_auth, png_bytes(PIXELS), name="pic")
    run = await start(quick_client, quick_auth, {"recipe": "grayscale", "inputs": ["pic"]})
    await sse(quick_client, run["run_id"])
    keys = Keys(quick.redis_prefix)

    async def finish_recorded() -> bool:  # committed just after the run's final event
        return bool(await redis_client.exists(keys.step(finish_id(run["run_id"]))))

    await poll_async(finish_recorded)
    node_id = quick_client.app[NODE].identity.node_id
    written = await Snapshot(redis_client, keys, node_id).export()
    elsewhere = Keys(f"test-{uuid.uuid4().hex[:12]}:")
    try:
        restored = await Snapshot(redis_client, elsewhere, node_id).restore(written)
        assert (restored.runs, restored.steps) == (1, 2) and restored.contents >= 2  # the step, the finish
        assert await Snapshot(redis_client, elsewhere, node_id).export() == written
        twice = await Snapshot(redis_client, elsewhere, node_id).restore(written)
        assert (twice.runs, twice.steps, twice.contents) == (0, 0, 0)  # nothing added twice
        assert await redis_client.hget(elsewhere.assets, "pic") == image["content_id"]
    finally:
        async for key in redis_client.scan_iter(match=f"{elsewhere.prefix}*"):
            await redis_client.delete(key)


async def test_peers_lists_each_peer_and_its_last_error(settings: Settings, node_client: NodeClient) -> None:
    """GET /peers: every configured peer, nothing merged yet, and why (its URL refuses)."""
    peer = identity().node_id
    url = f"http://127.0.0.1:{closed_port()}"
    client = await node_client(settings.replace(peers=(f"{peer}@{url}",), peer_poll=0.2))

    async def failing() -> list[dict[str, Any]] | None:
        items: list[dict[str, Any]] = (await (await client.get("/peers")).json())["items"]
        return items if items[0]["error"] else None

    [item] = await poll_async(failing)
    assert item["node_id"] == peer and item["urls"] == [url] and item["sequence"] is None
    assert item["error"].startswith(f"GET {url}/state failed")


async def test_a_last_state_that_cannot_be_read_back_stops_publishing(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    """The node's state file names index documents IPFS cannot give back: recovery fails,
    saying how to start over, and publishing refuses too, rather than replace the last state
    with an empty one; the state file stays as it was."""
    node = load_or_create(settings.data_dir)
    missing = {name: leaf_cid(os.urandom(64)) for name in INDEXES}
    last = sign_state(
        node, sequence=5, url="http://x", ipns_name="x", peer_id="y", indexes=missing, published="then"
    )
    replace_private_file(settings.data_dir / STATE_FILE, last)
    keys = Keys(settings.redis_prefix)
    assert settings.ipfs_api is not None
    async with ClientSession() as session:
        ipfs = IpfsClient(settings.ipfs_api, session, timeout_s=1.0)
        names = IpnsNames(ipfs, node.node_id)
        recovery = functools.partial(
            recover, identity=node, ipfs=ipfs, client=redis_client, keys=keys, names=names,
            data_dir=settings.data_dir,
        )  # fmt: skip
        with pytest.raises(RecoveryFailed, match=f"remove {settings.data_dir / STATE_FILE}"):
            await recovery()
        publisher = StatePublisher(
            identity=node, ipfs=ipfs, client=redis_client, keys=keys, names=names, url="http://x",
            data_dir=settings.data_dir, debounce_s=0.1, recovery=recovery,
        )  # fmt: skip
        with pytest.raises(RecoveryFailed):
            await publisher.publish()
    assert (settings.data_dir / STATE_FILE).read_bytes() == last
    assert not await redis_client.exists(keys.state(node.node_id))


async def test_a_peer_known_by_its_ipns_name_is_read_through_it(
    quick_client: Client, quick_auth: dict[str, str], ipfs: IpfsClient, redis_client: aioredis.Redis
) -> None:
    """A peer given only by IPNS name: a poll resolves the name, verifies the state it points
    at, and merges its computed steps (here, without pubsub or a URL to race with)."""
    image = await upload(quick_client, quick_auth, png_bytes(PIXELS[::-1]))
    run = await start(quick_client, quick_auth, {"recipe": "sepia", "inputs": [image["cid"]]})
    await sse(quick_client, run["run_id"])
    node_id = quick_client.app[NODE].identity.node_id
    ipns_name = (await (await quick_client.get("/identity")).json())["ipns_name"]

    async def steps_listed(state: NodeState) -> bool:
        return any(step["receipt_cid"] for step in (await index_of(ipfs, state, "steps"))["steps"])

    state = await published(quick_client, steps_listed)
    follower_keys = Keys(f"test-{uuid.uuid4().hex[:12]}:")
    async with ClientSession() as session:
        peer = Peer(node_id, ipns_names=(ipns_name,))
        follower = PeerSync(
            peers=[peer], ipfs=ipfs, session=session, client=redis_client, keys=follower_keys, poll_s=60
        )
        try:
            await follower.poll_peer(peer)  # not started: no pubsub, no periodic poll
            [status] = await follower.status()
        finally:
            async for key in redis_client.scan_iter(match=f"{follower_keys.prefix}*"):
                await redis_client.delete(key)
    assert (status["source"], status["error"]) == (f"/ipns/{ipns_name}", None)
    assert status["sequence"] >= state.sequence and status["steps"] == 1


async def test_a_key_that_names_nothing_yet_is_a_fresh_start(
    settings: Settings, redis_client: aioredis.Redis, ipfs: IpfsClient
) -> None:
    """The daemon holds the node's key (made at an earlier start that never published) but no
    record under it, and there is no state file: recovery says fresh, so the node publishes."""
    node = load_or_create(settings.data_dir)
    await ipfs.key_gen(f"artdag-{node.node_id}")
    names = IpnsNames(ipfs, node.node_id)
    found = await recover(
        identity=node, ipfs=ipfs, client=redis_client, keys=Keys(settings.redis_prefix), names=names,
        data_dir=settings.data_dir,
    )  # fmt: skip
    assert found == "fresh" and (await names.get()).key_existed
