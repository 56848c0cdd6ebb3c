"""Per-user limits through the API, with L2 users on real Redis and IPFS: the stored-bytes quota
(by Content-Length, while streaming, at the atomic commit, shared content, deletes, run
outputs), unfinished runs per user, the write rate (honest Retry-After, counted cluster-wide),
and the admin exempt from all three."""

from __future__ import annotations

import asyncio
import io
import os
import time
from typing import Any

import aiohttp
import numpy as np
import pytest

from node.config import ConfigError, RateLimit, Settings
from node.http.appkeys import NODE
from node.pixels.imaging import png_bytes
from node.services import EmbeddedServices
from tests.conftest import L2_PUBLIC_URL
from tests.helpers import CHUNKED_FORM_TYPE, Client, NodeClient, chunked_form, poll_async, sse
from tests.l2_server import TestL2

WAIT_TEN_SECONDS = (
    "name: waits\ndag:\n  nodes:\n    - {id: src, type: SOURCE, config: {input: true}}\n"
    "    - {id: out, type: EFFECT, config: {effect: wait, seconds: 10}, inputs: [src]}\n  output: out\n"
)


async def limited_node(node_client: NodeClient, settings: Settings, l2: TestL2, **limits: Any) -> Client:
    """A node trusting ``l2`` with these limits (the admin token is in its data directory)."""
    return await node_client(
        settings.replace(l2_trusted=(l2.url,), public_url=L2_PUBLIC_URL, l2_verify_ttl=60.0, **limits)
    )


def as_user(l2: TestL2, name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {l2.issue(name, L2_PUBLIC_URL)}"}


def as_admin(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {(settings.data_dir / 'admin_token').read_text().strip()}"}


def form(data: bytes) -> aiohttp.FormData:
    body = aiohttp.FormData()
    body.add_field("file", io.BytesIO(data), filename="f")
    return body


def picture(seed: int, side: int = 12) -> bytes:
    return png_bytes(np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8))


async def stored(node: Client, headers: dict[str, str], data: bytes) -> dict[str, Any]:
    response = await node.post("/cache/upload", data=form(data), headers=headers)
    assert response.status in (200, 201), await response.text()
    return dict(await response.json())


async def usage(node: Client, headers: dict[str, str]) -> dict[str, Any]:
    return dict((await (await node.get("/", headers=headers)).json())["usage"])


async def error_of(response: aiohttp.ClientResponse) -> dict[str, Any]:
    return dict((await response.json())["error"])


async def test_quota_by_content_length_answers_before_the_body(
    node_client: NodeClient, settings: Settings, l2: TestL2
) -> None:
    """An upload whose Content-Length is past the quota is 413 quota_exceeded at once: the node
    answers without waiting for a body that never comes."""
    node = await limited_node(node_client, settings, l2, quota_bytes=50_000)
    token = as_user(l2, "alice")["Authorization"]
    reader, writer = await asyncio.open_connection(node.host, node.port)
    try:
        writer.write(
            b"POST /cache/upload HTTP/1.1\r\nHost: l1.test\r\nAuthorization: " + token.encode() + b"\r\n"
            b"Content-Type: multipart/form-data; boundary=B\r\nContent-Length: 10000000\r\n\r\n"
        )
        status_line = await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()
        await writer.wait_closed()
    assert b" 413 " in status_line
    response = await node.post("/cache/upload", data=form(os.urandom(200_000)), headers=as_user(l2, "alice"))
    error = await error_of(response)
    assert (response.status, error["code"]) == (413, "quota_exceeded")
    assert error["details"]["used"] == 0 and error["details"]["quota"] == 50_000
    assert "DELETE /cache/{cid}" in error["message"] and "ARTDAG_QUOTA_BYTES" in error["message"]


async def test_quota_while_streaming_stores_nothing(
    node_client: NodeClient, settings: Settings, l2: TestL2
) -> None:
    """A chunked upload (no Content-Length) is cut off once it passes the quota: 413, nothing
    pinned or indexed, and the user's usage unchanged."""
    node = await limited_node(node_client, settings, l2, quota_bytes=100_000)
    alice = as_user(l2, "alice")
    first = await stored(node, alice, picture(1))
    pins_before = await node.app[NODE].ipfs.pin_ls()
    response = await node.post(
        "/cache/upload", data=chunked_form(20), headers={**alice, "Content-Type": CHUNKED_FORM_TYPE}
    )
    assert (response.status, (await error_of(response))["code"]) == (413, "quota_exceeded")
    assert await node.app[NODE].ipfs.pin_ls() == pins_before
    assert (await (await node.get("/cache")).json())["total"] == 1
    assert (await usage(node, alice))["stored_bytes"] == first["size"]


async def test_racing_uploads_cannot_pass_the_quota_together(
    node_client: NodeClient, settings: Settings, l2: TestL2
) -> None:
    """Two uploads by one user, each within the quota but not both: the commit decides
    atomically, so one is stored and the other is 413 with nothing of it pinned."""
    node = await limited_node(node_client, settings, l2, quota_bytes=150_000)
    alice = as_user(l2, "alice")
    pins_before = await node.app[NODE].ipfs.pin_ls()
    responses = await asyncio.gather(
        *(node.post("/cache/upload", data=form(os.urandom(100_000)), headers=alice) for _ in range(2))
    )
    assert sorted(response.status for response in responses) == [201, 413]
    assert (await usage(node, alice))["stored_bytes"] == 100_000
    assert len(await node.app[NODE].ipfs.pin_ls()) == len(pins_before) + 1


async def test_shared_content_counts_for_each_owner_and_deletes_lower_it(
    node_client: NodeClient, settings: Settings, l2: TestL2
) -> None:
    """The same bytes uploaded by Alice (twice) and Bob count once for each of them; Alice's
    delete lowers only hers, and an admin's delete of what is left lowers Bob's."""
    node = await limited_node(node_client, settings, l2, quota_bytes=10**6)
    alice, bob = as_user(l2, "alice"), as_user(l2, "bob")
    shared = await stored(node, alice, picture(2))
    await stored(node, alice, picture(2))
    await stored(node, bob, picture(2))
    assert (await usage(node, alice))["stored_bytes"] == shared["size"]
    assert (await usage(node, bob))["stored_bytes"] == shared["size"]
    assert (await usage(node, alice))["quota_bytes"] == 10**6
    assert (await node.delete(f"/cache/{shared['cid']}", headers=alice)).status == 200
    assert (await usage(node, alice))["stored_bytes"] == 0
    assert (await usage(node, bob))["stored_bytes"] == shared["size"]
    assert (await node.delete(f"/cache/{shared['cid']}", headers=as_admin(settings))).status == 200
    assert (await usage(node, bob))["stored_bytes"] == 0


async def test_a_run_output_counts_to_its_owner_and_is_checked_at_admission(
    node_client: NodeClient, settings: Settings, l2: TestL2
) -> None:
    """A run admitted under the quota completes even though its output takes its owner past it;
    then the owner's next run and upload are 413 quota_exceeded, until they delete the run."""
    image = picture(3)
    node = await limited_node(node_client, settings, l2, quota_bytes=len(image) + 1)
    alice = as_user(l2, "alice")
    source = await stored(node, alice, image)
    started = await node.post("/runs", json={"recipe": "invert", "inputs": [source["cid"]]}, headers=alice)
    assert started.status == 202, await started.text()
    run_id = (await started.json())["run_id"]
    await sse(node, run_id)
    run = await (await node.get(f"/runs/{run_id}")).json()
    assert run["status"] == "completed"
    output = await node.app[NODE].store.resolve(run["output"]["cid"])
    assert (await usage(node, alice))["stored_bytes"] == source["size"] + output.size
    again = await node.post("/runs", json={"recipe": "invert", "inputs": [source["cid"]]}, headers=alice)
    assert (again.status, (await error_of(again))["code"]) == (413, "quota_exceeded")
    upload = await node.post("/cache/upload", data=form(picture(4)), headers=alice)
    assert (upload.status, (await error_of(upload))["code"]) == (413, "quota_exceeded")
    assert (await node.delete(f"/runs/{run_id}", headers=alice)).status == 200
    assert (await usage(node, alice))["stored_bytes"] == source["size"]


async def test_usage_is_rebuilt_when_redis_is_emptied(
    own_redis: EmbeddedServices, node_client: NodeClient, l2: TestL2
) -> None:
    """After FLUSHALL the node restores its published state, and with it what each user holds:
    the content they own and their kept runs' outputs."""
    settings = own_redis.settings.replace(redis_watch=0.2, state_debounce=3600)
    node = await limited_node(node_client, settings, l2, quota_bytes=10**6)
    alice = as_user(l2, "alice")
    source = await stored(node, alice, picture(7))
    started = await node.post("/runs", json={"recipe": "invert", "inputs": [source["cid"]]}, headers=alice)
    assert started.status == 202, await started.text()
    await sse(node, (await started.json())["run_id"])
    before = (await usage(node, alice))["stored_bytes"]
    assert before > source["size"]
    await node.app[NODE].publisher.publish()
    await node.app[NODE].redis.flushall()

    async def rebuilt() -> bool:
        shown = (await (await node.get("/", headers=alice)).json())["usage"] or {}
        return bool(shown.get("stored_bytes") == before)

    await poll_async(rebuilt, timeout_s=15)


async def test_unfinished_runs_per_user(node_client: NodeClient, settings: Settings, l2: TestL2) -> None:
    """With one unfinished run allowed, a second run or a batch is 429 too_many_runs with
    Retry-After and writes nothing; another user and the admin are not held back; once the run
    is cancelled the user may start another."""
    node = await limited_node(node_client, settings, l2, max_runs_per_user=1)
    alice, bob = as_user(l2, "alice"), as_user(l2, "bob")
    image = await stored(node, alice, picture(5))
    recipe = await stored(node, alice, WAIT_TEN_SECONDS.encode())
    body = {"recipe": recipe["cid"], "inputs": [image["cid"]]}
    first = await node.post("/runs", json=body, headers=alice)
    assert first.status == 202, await first.text()
    runs_before = [run["run_id"] for run in (await (await node.get("/runs")).json())["items"]]
    refused = [
        await node.post("/runs", json=body, headers=alice),
        await node.post("/runs/batch", json={"recipe": "invert", "items": [[image["cid"]]]}, headers=alice),
    ]
    for response in refused:
        error = await error_of(response)
        assert (response.status, error["code"]) == (429, "too_many_runs")
        assert int(response.headers["Retry-After"]) > 0
        assert error["details"] == {"unfinished": 1, "limit": 1}
    assert [run["run_id"] for run in (await (await node.get("/runs")).json())["items"]] == runs_before
    assert (await usage(node, alice))["unfinished_runs"] == 1
    for other in (bob, as_admin(settings)):
        response = await node.post(
            "/runs", json={"recipe": "invert", "inputs": [image["cid"]]}, headers=other
        )
        assert response.status == 202, await response.text()
    run_id = (await first.json())["run_id"]
    assert (await node.post(f"/runs/{run_id}/cancel", headers=alice)).status == 200

    async def admitted() -> bool:
        response = await node.post("/runs", json=body, headers=alice)
        return response.status == 202

    await poll_async(admitted, timeout_s=10)


async def test_rate_limit_is_honest_and_cluster_wide(
    node_client: NodeClient, settings: Settings, l2: TestL2
) -> None:
    """Two writes in 2 s: the third, on another node sharing Redis, is 429 rate_limited; after
    Retry-After seconds (found by polling, not sleeping) a write passes again. Reads are not
    counted, and the admin is not limited."""
    rate = RateLimit(2, 2.0, "2/2s")
    one = await limited_node(node_client, settings, l2, rate_limit=rate)
    two = await limited_node(node_client, settings.replace(data_dir=settings.data_dir.parent / "two"), l2,
                             rate_limit=rate)  # fmt: skip
    alice = as_user(l2, "alice")
    write = "/runs/run-0000/cancel"  # a write that changes nothing: 404 after it is counted
    for node in (one, one):
        assert (await node.post(write, headers=alice)).status == 404
    assert (await two.get("/runs", headers=alice)).status == 200
    refused = await two.post(write, headers=alice)
    refused_at = time.monotonic()
    assert (refused.status, (await error_of(refused))["code"]) == (429, "rate_limited")
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= 2
    for _ in range(5):
        assert (await one.post(write, headers=as_admin(settings))).status == 404

    async def passes() -> bool:
        return (await two.post(write, headers=alice)).status == 404

    await poll_async(passes, timeout_s=10)
    assert time.monotonic() - refused_at <= retry_after + 0.5


async def test_admin_is_exempt(node_client: NodeClient, settings: Settings, l2: TestL2) -> None:
    """With every limit tiny, the admin still uploads, runs and writes; GET / shows no limits."""
    node = await limited_node(
        node_client, settings, l2, quota_bytes=10, max_runs_per_user=1, rate_limit=RateLimit(1, 60.0, "1/min")
    )
    admin = as_admin(settings)
    image = await stored(node, admin, picture(6))
    for _ in range(2):
        response = await node.post(
            "/runs", json={"recipe": "invert", "inputs": [image["cid"]]}, headers=admin
        )
        assert response.status == 202, await response.text()
    shown = await usage(node, admin)
    assert shown["stored_bytes"] >= image["size"]
    assert (shown["quota_bytes"], shown["max_runs"], shown["rate_limit"]) == (None, None, None)


@pytest.mark.parametrize(
    ("env", "wanted"),
    [
        ({"ARTDAG_QUOTA_BYTES": "2G"}, {"quota_bytes": 2 * 1000**3}),
        ({"ARTDAG_QUOTA_BYTES": "0"}, {"quota_bytes": 0}),
        ({"ARTDAG_MAX_RUNS_PER_USER": "4"}, {"max_runs_per_user": 4}),
        ({"ARTDAG_RATE_LIMIT": "120/min"}, {"rate_limit": RateLimit(120, 60.0, "120/min")}),
        ({"ARTDAG_RATE_LIMIT": "5/10s"}, {"rate_limit": RateLimit(5, 10.0, "5/10s")}),
        ({"ARTDAG_RATE_LIMIT": "off"}, {"rate_limit": None}),
    ],
)
def test_limit_settings(env: dict[str, str], wanted: dict[str, Any]) -> None:
    """The three settings parse as documented; unset, there are no limits."""
    read = Settings.from_env(env)
    assert {name: getattr(read, name) for name in wanted} == wanted
    unset = Settings.from_env({})
    assert (unset.quota_bytes, unset.max_runs_per_user, unset.rate_limit) == (0, 0, None)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ARTDAG_QUOTA_BYTES": "lots"}, "ARTDAG_QUOTA_BYTES: must be a size such as 2G"),
        ({"ARTDAG_MAX_RUNS_PER_USER": "-1"}, "ARTDAG_MAX_RUNS_PER_USER: must be an integer from 0"),
        ({"ARTDAG_RATE_LIMIT": "120 per minute"}, "ARTDAG_RATE_LIMIT: must be COUNT/PERIOD such as 120/min"),
        ({"ARTDAG_RATE_LIMIT": "0/min"}, "ARTDAG_RATE_LIMIT: allows 1 to 10000 requests"),
    ],
)
def test_bad_limit_settings(env: dict[str, str], message: str) -> None:
    """A bad limit fails start-up, naming the variable and what it takes."""
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)
