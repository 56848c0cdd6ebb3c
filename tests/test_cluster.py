"""The cluster view: two nodes sharing a Redis each register what they are doing in the one
registry they keep for their daemons; GET /cluster and /cluster show both, busy or idle, live,
silent or dropped."""

from __future__ import annotations

import json

import numpy as np
import redis.asyncio as aioredis

from node import __version__
from node.config import Settings
from node.federation.peering import NODE_FIELD, SILENT_AFTER_S, STALE_S
from node.http.appkeys import NODE
from node.pixels.imaging import png_bytes
from node.sync.keys import Keys
from tests.helpers import NodeClient, poll_async, sse, start, upload, wait_until_async


async def test_two_nodes_show_what_each_is_doing(
    settings: Settings, node_client: NodeClient, redis_client: aioredis.Redis
) -> None:
    """Both nodes are listed by either, with URL, version, CPU class and workers; the one
    computing a step shows it (its run, step, since when), until it is done; a node not
    heard from for a while is silent, then dropped."""
    first = await node_client(settings)
    second = await node_client(
        settings.replace(data_dir=settings.data_dir.parent / "second", public_url="http://127.0.0.1:8101")
    )
    auth = {"Authorization": f"Bearer {(settings.data_dir / 'admin_token').read_text().strip()}"}
    ids = {client.app[NODE].identity.node_id for client in (first, second)}
    for client in (first, second):
        await client.app[NODE].peering.refresh()  # a peering round, as every 15 s
    listed = (await (await second.get("/cluster")).json())["nodes"]
    assert {item["node"] for item in listed} == ids
    for item in listed:
        assert item["state"] == "live" and item["version"] == __version__ and item["cpu"]
        assert item["workers"]["total"] == settings.workers and item["steps"] == []
    assert {item["url"] for item in listed} == {"http://127.0.0.1:8100", "http://127.0.0.1:8101"}

    image = await upload(
        first, auth, png_bytes(np.random.default_rng(6).integers(0, 256, (8, 8, 3), np.uint8))
    )
    run = await start(first, auth, {"recipe": "wait", "inputs": [image["cid"]], "params": {"seconds": 3}})
    busy = await wait_until_async(
        lambda: next((c for c in (first, second) if c.app[NODE].pool.busy_pids), None), timeout_s=30
    )
    await busy.app[NODE].peering.refresh()
    shown = {item["node"]: item for item in (await (await first.get("/cluster")).json())["nodes"]}
    working = shown[busy.app[NODE].identity.node_id]
    assert working["workers"]["busy"] == 1
    assert [(step["run"], step["step"]) for step in working["steps"]] == [(run["run_id"], "wait")]
    page = await (await first.get("/cluster", headers={"Accept": "text/html"})).text()
    assert f'data-node="{busy.app[NODE].identity.node_id}"' in page and run["run_id"] in page
    assert (await sse(first, run["run_id"]))[-1][1] == "run_completed"

    key, field = Keys(settings.redis_prefix).daemons, NODE_FIELD + second.app[NODE].identity.node_id
    entry = json.loads(str(await redis_client.hget(key, field)))
    await redis_client.hset(key, field, json.dumps({**entry, "seen": entry["seen"] - SILENT_AFTER_S - 1}))
    states = {item["node"]: item["state"] for item in (await (await first.get("/cluster")).json())["nodes"]}
    assert states[second.app[NODE].identity.node_id] == "silent"
    await redis_client.hset(key, field, json.dumps({**entry, "seen": entry["seen"] - STALE_S - 1}))
    left = {item["node"] for item in (await (await first.get("/cluster")).json())["nodes"]}
    assert left == {first.app[NODE].identity.node_id} and not await redis_client.hexists(key, field)


async def test_a_node_describes_itself_as_soon_as_it_is_open(
    settings: Settings, node_client: NodeClient
) -> None:
    """The first peering round comes before the executor; once that is open the node has a
    round at once, so the cluster view shows its workers without waiting the 15 s between rounds."""
    client = await node_client(settings)

    async def described() -> dict[str, object] | None:
        nodes = (await (await client.get("/cluster")).json())["nodes"]
        return next((item for item in nodes if "workers" in item), None)

    item = await poll_async(described, timeout_s=10)
    assert item["node"] == client.app[NODE].identity.node_id
