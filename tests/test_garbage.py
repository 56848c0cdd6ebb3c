"""The disk budget (node.executor.garbage): intermediates evicted least recently used first,
never what must stay, atomically against claims and new runs; verification says ``evicted``."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from node.config import Settings
from node.executor.garbage import GarbageCollector
from node.http.appkeys import NODE
from node.pixels.imaging import png_bytes
from node.services import EmbeddedServices
from node.store.content import ContentStore
from node.store.errors import IpfsUnavailable
from node.store.ipfs import IpfsClient
from node.sync.connection import connect
from node.sync.eviction import Evicted, StepEviction
from node.sync.index import ContentEntry, ContentIndex, StepEntry, StepIndex
from node.sync.keys import Keys
from tests.conftest import L2_PUBLIC_URL
from tests.helpers import Client, NodeClient, poll_async, sse, start, upload
from tests.l2_server import TestL2
from tests.test_ui_pages import page_text

THREE_STEPS = """
name: soft-edges-small
dag:
  nodes:
    - {id: photo, type: SOURCE, config: {input: true, name: photo}}
    - {id: soft, type: EFFECT, config: {effect: blur, params: {sigma: 3}}, inputs: [photo]}
    - {id: edges, type: EFFECT, config: {effect: dog}, inputs: [soft]}
    - {id: small, type: RESIZE, config: {width: 100, height: 80, fit: stretch}, inputs: [edges]}
  output: small
"""
SLOW_AFTER = (
    THREE_STEPS.replace("name: soft-edges-small", "name: soft-edges-then-wait")
    .replace("output: small", "output: slow")
    .replace(
        "  output:",
        "    - {id: slow, type: EFFECT, config: {effect: wait, seconds: 10}, inputs: [small]}\n  output:",
    )
)
INTERMEDIATES = ("soft", "edges")
RNG = np.random.default_rng(26)


def photo() -> bytes:
    return png_bytes(RNG.integers(0, 256, (240, 320, 3), np.uint8))


def admin(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {(settings.data_dir / 'admin_token').read_text().strip()}"}


async def render(client: Client, auth: dict[str, str], recipe: str, image_cid: str) -> dict[str, Any]:
    """Run the recipe to completion; its detail, with the events it sent."""
    uploaded = await client.post("/recipes/upload", data=recipe, headers=auth)
    run = await start(client, auth, {"recipe": (await uploaded.json())["id"], "inputs": [image_cid]})
    events = await sse(client, run["run_id"])
    assert events[-1][1] == "run_completed", events[-3:]
    detail = dict(await (await client.get(f"/runs/{run['run_id']}")).json())
    detail["events"] = events
    return detail


def steps_by_event(events: list[tuple[str, str, dict[str, Any]]], kind: str) -> set[str]:
    return {str(data["step"]) for _, name, data in events if name == kind and isinstance(data, dict)}


@dataclass(frozen=True)
class Rendered:
    """A node on a daemon of its own with a budget of one byte, and one run of THREE_STEPS."""

    client: Client
    auth: dict[str, str]
    image: dict[str, Any]
    run: dict[str, Any]


async def rendered(
    settings: Settings, own_ipfs: EmbeddedServices, node_client: NodeClient, **changes: Any
) -> Rendered:
    """Open the node (``changes`` to its settings) and render THREE_STEPS once on it."""
    changes = {"ipfs_api": own_ipfs.settings.ipfs_api, "disk_budget": 1, "gc_interval": 3600, **changes}
    settings = settings.replace(**changes)
    client = await node_client(settings)
    auth = admin(settings)
    image = await upload(client, auth, photo())
    return Rendered(client, auth, image, await render(client, auth, THREE_STEPS, image["cid"]))


async def _pins(client: Client, cid: str) -> set[str]:
    found: set[str] = await client.server.app[NODE].ipfs.pin_ls(cid)  # type: ignore[attr-defined]
    return found


async def test_a_budget_below_a_run_s_intermediates_evicts_them_and_keeps_the_output(
    settings: Settings, own_ipfs: EmbeddedServices, node_client: NodeClient
) -> None:
    """The run completes; a collection evicts its two intermediates (step index, pin, local
    file), keeps the upload, the recipe, the output and the records; verification reports the
    intermediates as evicted, not as failures; running it again computes only what was evicted."""
    done = await rendered(settings, own_ipfs, node_client)
    client, auth, image, first = done.client, done.auth, done.image, done.run
    steps = first["steps"]
    gone = {steps[name]["cid"] for name in INTERMEDIATES}

    response = await client.post("/storage/gc", headers=auth)
    assert response.status == 200, await response.text()
    report = await response.json()
    assert report["reason"] == "requested" and report["evicted_steps"] == 2
    assert {item["cid"] for item in report["evicted"]} == gone
    assert report["reclaimed"] > 0 and report["after"]["total"] < report["before"]["total"]
    assert report["over_budget"] > 0  # soft: what must stay, stays

    for cid in gone:
        assert (await client.get(f"/cache/{cid}")).status == 404
        assert not await _pins(client, cid)
    for cid in (image["cid"], first["output"]["cid"], first["provenance_cid"]):
        assert await _pins(client, cid), cid
        assert (await client.get(f"/cache/{cid}")).status == 200

    verdict = await (await client.get(f"/provenance/{first['provenance_cid']}/verify")).json()
    assert verdict["ok"], verdict["problems"]
    assert len(verdict["evicted"]) == 2 and all(
        "evicted by the disk budget" in line for line in verdict["evicted"]
    )

    again = await render(client, auth, THREE_STEPS, image["cid"])
    assert again["output"]["cid"] == first["output"]["cid"]
    assert steps_by_event(again["events"], "step_finished") == set(INTERMEDIATES)
    assert steps_by_event(again["events"], "step_cached") == {"small"}
    verdict = await (await client.get(f"/provenance/{first['provenance_cid']}/verify")).json()
    assert verdict["ok"] and verdict["evicted"] == []  # held again: no longer evicted

    activity = (await (await client.get("/activities?limit=20")).json())["items"]
    collected = next(item for item in activity if item["kind"] == "garbage_collected")
    assert set(collected["cids"]) == gone and collected["reclaimed"] == report["reclaimed"]
    exported = {
        sample.name + str(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(
            await (await client.get("/metrics", headers=auth)).text()
        )
        for sample in family.samples
    }
    assert exported["artdag_gc_runs_total[]"] == 1
    assert exported["artdag_gc_reclaimed_bytes_total[]"] == report["reclaimed"]
    assert exported["artdag_gc_evicted_total[('kind', 'step')]"] == 2
    assert exported["artdag_disk_budget_bytes[]"] == 1


async def test_uploads_and_what_an_unfinished_run_needs_stay(
    settings: Settings, own_ipfs: EmbeddedServices, node_client: NodeClient
) -> None:
    """While a run whose plan names the intermediates is unfinished, they stay; so do uploads."""
    done = await rendered(settings, own_ipfs, node_client)
    client, auth, image, first = done.client, done.auth, done.image, done.run
    uploaded = await client.post("/recipes/upload", data=SLOW_AFTER, headers=auth)
    assert uploaded.status == 201, await uploaded.text()
    waiting = await start(client, auth, {"recipe": (await uploaded.json())["id"], "inputs": [image["cid"]]})

    report = await (await client.post("/storage/gc", headers=auth)).json()
    assert report["evicted_steps"] == 0
    for name in INTERMEDIATES:
        assert (await client.get(f"/cache/{first['steps'][name]['cid']}")).status == 200
    assert await _pins(client, image["cid"])
    assert (await client.post(f"/runs/{waiting['run_id']}/cancel", headers=auth)).status == 200

    async def evicted_once_finished() -> bool:
        report = await (await client.post("/storage/gc", headers=auth)).json()
        return bool(report["evicted_steps"])

    await poll_async(evicted_once_finished)


async def test_eviction_is_refused_while_claimed_used_put_again_or_runs_changed(settings: Settings) -> None:
    """The Lua script evicts nothing while a node claims a step, once a run was submitted since
    the collector looked, once a run reused one of the steps or put the same bytes again since;
    otherwise the steps leave the index together and the eviction is recorded."""
    assert settings.redis_url is not None
    client: aioredis.Redis = connect(settings.redis_url, 8)
    keys = Keys(settings.redis_prefix)
    steps, eviction, contents = (
        StepIndex(client, keys),
        StepEviction(client, keys),
        ContentIndex(client, keys),
    )
    content_id, cid = "c" * 64, "bafkreievicted"
    cache_ids = ["a" * 64, "b" * 64]
    active = ["run-0000000000000001"]
    try:
        for cache_id in cache_ids:
            await steps.put_if_absent(StepEntry(cache_id, cid, content_id, 10, "image/png"))
        await contents.put(ContentEntry(content_id, cid, 10, "image/png"))
        since = await eviction.now()

        async def evict(runs: list[str], when: float) -> Evicted:
            return await eviction.evict(content_id, cid, cache_ids, active_runs=runs, since=when, node="n")

        await client.set(keys.claim(cache_ids[1]), "node:token", px=30_000)
        assert (await evict([], since)).busy
        await client.delete(keys.claim(cache_ids[1]))
        await client.zadd(keys.runs_active, {active[0]: 1.0})
        assert (await evict([], since)).runs_changed
        await steps.touch(cache_ids[0])  # a run reused it after the look
        assert (await evict(active, since)).busy
        since = await eviction.now()
        await contents.put(ContentEntry(content_id, cid, 10, "image/png"))  # the same bytes, again
        assert (await evict(active, since)).busy
        assert len(await steps.get_many(cache_ids)) == 2
        done = await evict(active, await eviction.now())
        assert done.steps == 2 and await steps.get_many(cache_ids) == []
        assert {member for member, _ in await steps.listed()} == set()
        assert json.loads(str(await client.hget(keys.evicted, cid)))["cache_ids"] == cache_ids
    finally:
        await client.aclose()


async def test_the_node_collects_by_itself_above_its_budget(
    settings: Settings, own_ipfs: EmbeddedServices, node_client: NodeClient
) -> None:
    """Every ARTDAG_GC_INTERVAL, a node above its budget collects; GET /storage says so."""
    done = await rendered(settings, own_ipfs, node_client, gc_interval=0.2)
    client, auth = done.client, done.auth

    async def collected() -> dict[str, Any] | None:
        shown = await (await client.get("/storage", headers=auth)).json()
        last = shown["last_collection"]
        return shown if last and last["reason"] == "budget" and last["evicted_steps"] else None

    shown = await poll_async(collected)
    assert shown["budget"] == 1 and shown["usage"]["total"] > 0
    assert (await client.get("/storage")).status == 401
    page = await page_text(
        client, "/", Authorization=auth["Authorization"]
    )  # the admin's home page shows the disk
    assert "Collect garbage now" in page and "steps evicted" in page and "(budget)" in page
    assert "Collect garbage now" not in await page_text(client, "/")


async def test_local_cache_files_go_last_and_content_stays_readable(
    settings: Settings, own_ipfs: EmbeddedServices, node_client: NodeClient
) -> None:
    """Still above the budget once the intermediates went, the node removes local cache files
    not touched for a minute, least recently used first; their content is read from IPFS again."""
    made = await rendered(settings, own_ipfs, node_client)
    client, auth, done = made.client, made.auth, made.run
    cache = settings.data_dir / "cache"
    files = [path for path in cache.rglob("*") if path.is_file()]
    assert files
    an_hour_ago = time.time() - 3600
    for path in files:
        os.utime(path, (an_hour_ago, an_hour_ago))

    report = await (await client.post("/storage/gc", headers=auth)).json()
    assert report["cache_files_removed"] >= len(files) - 2  # the two intermediates' went with them
    assert report["after"]["cache"] == 0
    response = await client.get(f"/cache/{done['output']['cid']}")
    assert response.status == 200 and await response.read()


async def test_what_an_l2_published_stays_and_an_unreachable_l2_evicts_nothing(
    settings: Settings, own_ipfs: EmbeddedServices, node_client: NodeClient, l2: TestL2
) -> None:
    """An intermediate a trusted L2 has published is kept; while an L2 cannot be asked, no
    intermediate is evicted (it may have published any of them)."""
    made = await rendered(settings, own_ipfs, node_client, l2_trusted=(l2.url,), public_url=L2_PUBLIC_URL)
    client, auth, done = made.client, made.auth, made.run
    soft = done["steps"]["soft"]["cid"]
    soft_id = (await (await client.get(f"/cache/{soft}/probe")).json())["content_id"]
    l2.down = True
    report = await (await client.post("/storage/gc", headers=auth)).json()
    assert report["evicted_steps"] == 0 and report["kept"] == {"an L2 could not be asked": 2}
    l2.down = False
    l2.published.add(soft_id)
    report = await (await client.post("/storage/gc", headers=auth)).json()
    assert [item["cid"] for item in report["evicted"]] == [done["steps"]["edges"]["cid"]]
    assert (await client.get(f"/cache/{soft}")).status == 200


class _UnpinFails(IpfsClient):
    """The daemon answers everything but the unpin: as if it went away at that very moment."""

    async def pin_rm(self, cid: str) -> None:
        raise IpfsUnavailable("IPFS daemon is unavailable", command="pin/rm")


async def test_an_eviction_the_daemon_could_not_unpin_is_unpinned_by_the_next_collection(
    settings: Settings, own_ipfs: EmbeddedServices, node_client: NodeClient
) -> None:
    """Out of every index but still pinned, no later look would find it: the collection
    remembers it, and the next one unpins it."""
    done = await rendered(settings, own_ipfs, node_client)
    node = done.client.app[NODE]
    gone = {done.run["steps"][name]["cid"] for name in INTERMEDIATES}
    failing = _UnpinFails(node.ipfs.api_url, node.http_session, node.ipfs.timeout_s)
    collector = GarbageCollector(
        budget=1, interval_s=3600, node_id=node.identity.node_id,
        store=ContentStore(failing, node.store.index, node.redis, node.keys, gone=node.gone),
        steps=node.steps, eviction=StepEviction(node.redis, node.keys), runs=node.runs,
        cache=node.cache, activities=node.activities, published=node.publications.published,
    )  # fmt: skip
    first = await collector.collect()
    assert {item["cid"] for item in first.evicted} == gone
    assert all([await _pins(done.client, cid) for cid in gone])  # still pinned
    await node.garbage.collect()
    assert not any([await _pins(done.client, cid) for cid in gone])
    assert await StepEviction(node.redis, node.keys).unpins_left() == {}
