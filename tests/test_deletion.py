"""The deletion rules, through the API, with L2 users and an L2 that publishes content (the test
L2 in ``tests/l2_server.py``), on real Redis and IPFS: who may delete, what is refused and why,
what is unpinned each time, and the activities recorded."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import aiohttp
import numpy as np
import pytest

from node.http.appkeys import NODE
from node.pixels.imaging import png_bytes
from tests.conftest import L2_PUBLIC_URL
from tests.helpers import Client, poll_async, sse
from tests.l2_server import TestL2

PUBLIC_URL = L2_PUBLIC_URL


@pytest.fixture
def node(l2_node: Client) -> Client:
    return l2_node


def as_user(l2: TestL2, name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {l2.issue(name, PUBLIC_URL)}"}


def picture(seed: int) -> bytes:
    return png_bytes(np.random.default_rng(seed).integers(0, 256, (12, 12, 3), dtype=np.uint8))


async def upload(node: Client, headers: dict[str, str], data: bytes) -> dict[str, Any]:
    form = aiohttp.FormData()
    form.add_field("file", io.BytesIO(data), filename="f")
    response = await node.post("/cache/upload", data=form, headers=headers)
    assert response.status in (200, 201), await response.text()
    return dict(await response.json())


async def pinned(node: Client, cid: str) -> bool:
    return bool(await node.app[NODE].ipfs.pin_ls(cid))


async def render(node: Client, headers: dict[str, str], cid: str, recipe: str = "invert") -> dict[str, Any]:
    started = await node.post("/runs", json={"recipe": recipe, "inputs": [cid]}, headers=headers)
    assert started.status == 202, await started.text()
    run_id = (await started.json())["run_id"]
    await sse(node, run_id)
    return dict(await (await node.get(f"/runs/{run_id}")).json())


async def error_of(response: aiohttp.ClientResponse) -> tuple[int, str]:
    return response.status, (await response.json())["error"]["code"]


async def test_two_owners_of_the_same_bytes(node: Client, l2: TestL2) -> None:
    """Alice and Bob upload the same bytes: one entry, two owners. Carol may not delete it;
    Alice's delete drops only her ownership (still pinned); Bob's unpins it and forgets it, and
    the node's published state stops listing it."""
    alice, bob = as_user(l2, "alice"), as_user(l2, "bob")
    stored = await upload(node, alice, picture(1))
    assert (await upload(node, bob, picture(1)))["cid"] == stored["cid"]
    assert await error_of(await node.delete(f"/cache/{stored['cid']}", headers=as_user(l2, "carol"))) == (
        403, "forbidden"
    )  # fmt: skip
    first = await (await node.delete(f"/cache/{stored['cid']}", headers=alice)).json()
    assert (first["deleted"], first["owners_left"]) == (False, 1) and await pinned(node, stored["cid"])
    second = await (await node.delete(f"/cache/{stored['cid']}", headers=bob)).json()
    assert (second["deleted"], second["owners_left"]) == (True, 0) and not await pinned(node, stored["cid"])
    assert (await node.get(f"/cache/{stored['cid']}")).status == 404

    async def published_without_it() -> bool:  # the deletion reaches the node's published state
        response = await node.get("/state")
        if response.status != 200:
            return False
        contents = json.loads(await node.app[NODE].ipfs.cat_all((await response.json())["contents"], 10**7))
        return stored["content_id"] not in {item["content_id"] for item in contents["contents"]}

    await poll_async(published_without_it)


async def test_published_content_is_kept_and_an_unreachable_l2_refuses(node: Client, l2: TestL2) -> None:
    """Content an L2 has published: 409 content_published, nothing changes. With the L2 down:
    503, nothing changes. Once unpublished (the node's short-lived copy of L2's answer dropped),
    the delete goes."""
    alice = as_user(l2, "alice")
    stored = await upload(node, alice, picture(2))
    l2.published.add(stored["content_id"])
    assert await error_of(await node.delete(f"/cache/{stored['cid']}", headers=alice)) == (
        409,
        "content_published",
    )
    l2.published.clear()
    l2.down = True
    node.app[NODE].publications.forget([stored["content_id"]])
    assert await error_of(await node.delete(f"/cache/{stored['cid']}", headers=alice)) == (
        503,
        "l2_unavailable",
    )
    assert await pinned(node, stored["cid"])
    l2.down = False
    assert (await (await node.delete(f"/cache/{stored['cid']}", headers=alice)).json())["deleted"] is True


async def test_run_deletion_rules_and_what_each_unpins(node: Client, l2: TestL2) -> None:
    """A run's input is refused while the run exists (409 content_in_use); a completed run whose
    output is published is refused (409 run_output_published); once unpublished, deleting it
    unpins its output (nobody owns it, no other run holds it) but not the recipe's bytes
    but not its input (Alice does), which she may then delete. Activities record the run's
    completion and each deletion."""
    alice = as_user(l2, "alice")
    source = await upload(node, alice, picture(3))
    done = await render(node, alice, source["cid"])
    assert done["status"] == "completed"
    output = done["output"]
    refused = await node.delete(f"/cache/{source['cid']}", headers=alice)
    assert await error_of(refused) == (409, "content_in_use")
    assert done["run_id"] in (await refused.json())["error"]["message"]
    l2.published.add(output["content_id"])
    assert await error_of(await node.delete(f"/runs/{done['run_id']}", headers=alice)) == (
        409, "run_output_published"
    )  # fmt: skip
    assert await pinned(node, output["cid"])
    l2.published.clear()
    node.app[NODE].publications.forget([output["content_id"]])
    deleted = await (await node.delete(f"/runs/{done['run_id']}", headers=alice)).json()
    assert deleted["deleted"] == done["run_id"]
    assert deleted["removed"] == [output["cid"]]
    assert await pinned(node, done["recipe"]["cid"])  # provenance names it
    assert not await pinned(node, output["cid"]) and await pinned(node, source["cid"])
    assert (await (await node.delete(f"/cache/{source['cid']}", headers=alice)).json())["deleted"] is True
    kinds = [item["kind"] for item in (await (await node.get("/activities")).json())["items"]]
    assert kinds[:3] == ["content_deleted", "run_deleted", "run_completed"]


async def test_what_a_deleted_run_removes_leaves_no_local_trace(node: Client, l2: TestL2) -> None:
    """Deleting a run that unpins its output removes everything local about it too, as a
    content delete does: the output's cache file (where the step left it), its thumbnail and
    probe report, and the memory of its bytes; a ref to it is then 404."""
    alice = as_user(l2, "alice")
    source = await upload(node, alice, picture(7))
    done = await render(node, alice, source["cid"])
    output = done["output"]
    parts = node.app[NODE]
    cached = parts.cache.path_for(output["content_id"])
    assert cached.is_file()  # the step's output was moved into the local cache
    assert (await node.get(f"/cache/{output['cid']}/thumbnail")).status == 200
    assert (await node.get(f"/cache/{output['cid']}/probe")).status == 200
    assert (await node.get(f"/cache/{output['cid']}")).status == 200  # remembered as a hot read
    thumbnail = parts.thumbnails.path_for(output["content_id"])
    assert thumbnail.is_file() and await parts.contents.media_info(output["content_id"]) is not None
    deleted = await (await node.delete(f"/runs/{done['run_id']}", headers=alice)).json()
    assert deleted["removed"] == [output["cid"]]
    assert not cached.exists() and not thumbnail.exists()
    assert await parts.contents.media_info(output["content_id"]) is None
    assert await error_of(await node.get(f"/cache/{output['cid']}")) == (404, "not_found")


async def test_a_failed_run_can_always_be_deleted(node: Client, l2: TestL2) -> None:
    """A run that failed (a broken PNG) is deleted even with L2 down (there is no output to ask
    about); what it held is kept, since L2 cannot say whether it is published."""
    alice = as_user(l2, "alice")
    broken = await upload(node, alice, picture(4)[:40])
    failed = await render(node, alice, broken["cid"])
    assert failed["status"] == "failed"
    l2.down = True
    deleted = await node.delete(f"/runs/{failed['run_id']}", headers=alice)
    assert deleted.status == 200 and (await deleted.json())["removed"] == []  # L2 cannot say: all kept
    assert (await node.get(f"/runs/{failed['run_id']}")).status == 404
    assert await pinned(node, broken["cid"])


async def test_a_delete_and_a_new_run_on_the_same_content(node: Client, l2: TestL2) -> None:
    """Whichever comes first wins, and a run never holds content that was unpinned: a delete
    first makes the run 404 (its input is gone); a run first makes the delete 409 (in use). Then
    ten times at the same moment: always one of those two outcomes."""
    alice, bob = as_user(l2, "alice"), as_user(l2, "bob")
    gone = await upload(node, alice, picture(90))
    assert (await (await node.delete(f"/cache/{gone['cid']}", headers=alice)).json())["deleted"] is True
    late = await node.post("/runs", json={"recipe": "identity", "inputs": [gone["cid"]]}, headers=bob)
    assert late.status == 404
    held = await upload(node, alice, picture(91))
    await render(node, bob, held["cid"], recipe="identity")
    assert await error_of(await node.delete(f"/cache/{held['cid']}", headers=alice)) == (
        409,
        "content_in_use",
    )
    for seed in range(10):
        stored = await upload(node, alice, picture(100 + seed))
        deleting = node.delete(f"/cache/{stored['cid']}", headers=alice)
        starting = node.post("/runs", json={"recipe": "identity", "inputs": [stored["cid"]]}, headers=bob)
        deleted, started = await asyncio.gather(deleting, starting)
        if deleted.status == 200:
            assert (await deleted.json())["deleted"] is True and started.status == 404, seed
            assert not await pinned(node, stored["cid"])
        else:
            assert deleted.status == 409 and started.status == 202, seed
            assert await pinned(node, stored["cid"])
            await sse(node, (await started.json())["run_id"])


async def test_deleting_a_run_keeps_what_a_run_still_going_uses(node: Client, l2: TestL2) -> None:
    """Run A's output is the first step of run B, which is still going (a slow second step):
    deleting A removes nothing B may be reusing; B completes."""
    alice = as_user(l2, "alice")
    source = await upload(node, alice, picture(5))
    first = await render(node, alice, source["cid"])
    slow = (
        "name: slow-after\ndag:\n  nodes:\n    - {id: src, type: SOURCE, config: {input: true}}\n"
        "    - {id: neg, type: EFFECT, config: {effect: invert}, inputs: [src]}\n"
        "    - {id: out, type: EFFECT, config: {effect: wait, seconds: 1.5}, inputs: [neg]}\n  output: out\n"
    )
    recipe = await node.post(
        "/recipes/upload", data=slow.encode(), headers={**alice, "Content-Type": "application/x-yaml"}
    )
    assert recipe.status in (200, 201), await recipe.text()
    started = await node.post(
        "/runs", json={"recipe": (await recipe.json())["id"], "inputs": [source["cid"]]}, headers=alice
    )
    assert started.status == 202
    deleted = await (await node.delete(f"/runs/{first['run_id']}", headers=alice)).json()
    assert deleted["removed"] == [] and await pinned(node, first["output"]["cid"])
    await sse(node, (await started.json())["run_id"])
    assert (await (await node.get(f"/runs/{(await started.json())['run_id']}")).json())[
        "status"
    ] == "completed"
