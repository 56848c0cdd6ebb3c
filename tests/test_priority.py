"""Run priority: a free worker goes to the waiting step of the highest-priority run, first come
first served within a priority; above ARTDAG_PRIORITY_WITHOUT_ADMIN only the admin may ask."""

from __future__ import annotations

import asyncio

import numpy as np

from node.config import Settings
from node.executor.slots import PrioritySlots
from node.http.appkeys import NODE
from node.pixels.imaging import png_bytes
from tests.conftest import L2_PUBLIC_URL
from tests.helpers import Client, NodeClient, sse, start, upload, wait_until_async
from tests.l2_server import TestL2


def admin(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {(settings.data_dir / 'admin_token').read_text().strip()}"}


async def test_slots_go_to_the_best_rank_then_the_first_come() -> None:
    """One slot, held; five waiters arrive: they get it by priority, then in arrival order,
    and a waiter cancelled while waiting is skipped."""
    slots = PrioritySlots(1)
    order: list[str] = []
    release = asyncio.Event()

    async def holder() -> None:
        async with slots.held((0, "a")):
            await release.wait()

    async def waiter(name: str, priority: int, submitted: str) -> None:
        async with slots.held((-priority, submitted)):
            order.append(name)

    first = asyncio.create_task(holder())
    await asyncio.sleep(0)  # the holder takes the free slot
    waiting = [
        asyncio.create_task(waiter(name, priority, submitted))
        for name, priority, submitted in (
            ("low", -5, "1"),
            ("old", 0, "1"),
            ("new", 0, "2"),
            ("high", 5, "3"),
        )
    ]
    gone = asyncio.create_task(waiter("gone", 9, "0"))
    await asyncio.sleep(0)
    gone.cancel()
    release.set()
    await asyncio.gather(first, *waiting)
    assert order == ["high", "old", "new", "low"]
    async with slots.held((0, "z")):  # a cancelled waiter left nothing behind: the slot is free
        order.append("after")
    assert order[-1] == "after"


async def test_a_higher_priority_run_gets_the_next_free_worker(
    settings: Settings, node_client: NodeClient
) -> None:
    """One worker, held by a slow run; a low-priority run, then a high-priority one: when the
    worker frees, the high one's step starts first. Runs carry and list their priority."""
    client = await node_client(settings.replace(workers=1))  # the only node on this Redis prefix
    auth = admin(settings)
    image = await upload(
        client, auth, png_bytes(np.random.default_rng(2).integers(0, 256, (16, 16, 3), np.uint8))
    )
    slow = await start(client, auth, {"recipe": "wait", "inputs": [image["cid"]], "params": {"seconds": 1.5}})
    await wait_until_async(lambda: client.app[NODE].pool.busy_pids)  # the one worker is taken
    low = await start(client, auth, {"recipe": "invert", "inputs": [image["cid"]], "priority": -5})
    high = await start(client, auth, {"recipe": "sepia", "inputs": [image["cid"]], "priority": 5})
    for run in (slow, low, high):
        assert (await sse(client, run["run_id"]))[-1][1] == "run_completed"
    shown = {
        name: await (await client.get(f"/runs/{run['run_id']}")).json()
        for name, run in (("low", low), ("high", high))
    }
    assert shown["high"]["priority"] == 5 and shown["low"]["priority"] == -5
    assert shown["high"]["steps"]["sepia"]["started"] < shown["low"]["steps"]["invert"]["started"]
    listed = {item["run_id"]: item for item in (await (await client.get("/runs")).json())["items"]}
    assert listed[high["run_id"]]["priority"] == 5


async def test_a_high_priority_needs_the_admin(l2_node: Client, l2: TestL2) -> None:
    alice = {"Authorization": f"Bearer {l2.issue('alice', L2_PUBLIC_URL)}"}
    image = await upload(l2_node, alice, png_bytes(np.zeros((4, 4, 3), np.uint8)))
    body = {"recipe": "invert", "inputs": [image["cid"]]}
    refused = await l2_node.post("/runs", json={**body, "priority": 3}, headers=alice)
    assert refused.status == 403
    assert "needs the admin (ARTDAG_PRIORITY_WITHOUT_ADMIN)" in (await refused.json())["error"]["message"]
    assert (await l2_node.post("/runs", json={**body, "priority": -3}, headers=alice)).status == 202
    bad = await l2_node.post("/runs", json={**body, "priority": 11}, headers=alice)
    assert bad.status == 400 and (await bad.json())["error"]["details"]["field"] == "priority"


async def test_two_nodes_take_the_higher_priority_run_first(
    settings: Settings, node_client: NodeClient
) -> None:
    """Two nodes of one worker each, both held by slow runs; a low-priority run, then a
    high-priority one: whichever worker frees first takes the high one's step."""
    first = await node_client(settings.replace(workers=1))
    second = await node_client(settings.replace(workers=1, data_dir=settings.data_dir.parent / "second"))
    auth = admin(settings)
    image = await upload(
        first, auth, png_bytes(np.random.default_rng(3).integers(0, 256, (16, 16, 3), np.uint8))
    )
    for seconds in (3.0, 3.1):  # one slow run for each node's worker
        await start(first, auth, {"recipe": "wait", "inputs": [image["cid"]], "params": {"seconds": seconds}})
    await wait_until_async(lambda: all(c.app[NODE].pool.busy_pids for c in (first, second)), timeout_s=30)
    low = await start(first, auth, {"recipe": "invert", "inputs": [image["cid"]], "priority": -5})
    high = await start(first, auth, {"recipe": "sepia", "inputs": [image["cid"]], "priority": 5})
    # Both nodes know both runs, their steps waiting for a worker, before the slow ones end.
    await wait_until_async(
        lambda: all({-5, 5} <= set(c.app[NODE].scheduler.waiting_priorities) for c in (first, second)),
        timeout_s=30,
    )
    assert all(c.app[NODE].pool.busy_pids for c in (first, second)), "a slow step ended too soon for the test"
    for run in (low, high):
        assert (await sse(first, run["run_id"]))[-1][1] == "run_completed"
    low_step = (await (await first.get(f"/runs/{low['run_id']}")).json())["steps"]["invert"]
    high_step = (await (await first.get(f"/runs/{high['run_id']}")).json())["steps"]["sepia"]
    assert high_step["started"] < low_step["started"]
