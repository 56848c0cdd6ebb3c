"""GET /metrics: what a render, an upload and a download count, who may read it, and the
Redis and IPFS latencies measured where the node calls them."""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from node.config import Settings
from node.metrics import CONTENT_TYPE, UNMATCHED_ROUTE, Metrics
from node.pixels.imaging import png_bytes
from node.store.cid import leaf_cid
from node.store.errors import ContentNotFound, IpfsUnavailable
from node.store.ipfs import IpfsClient
from node.sync.claims import ClaimBoard
from node.sync.connection import connect, redis_errors
from node.sync.errors import RedisUnavailable
from node.sync.keys import Keys
from tests.helpers import Client, NodeClient, closed_port, poll_async, sse, start, upload

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of an exposition: (name, labels) -> value."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    """One sample's value (0 when the series does not exist yet)."""
    return found.get((name, frozenset(labels.items())), 0.0)


def total(found: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(amount for (sample, have), amount in found.items() if sample == name and wanted <= have)


async def scrape(client: Client, auth: dict[str, str] | None = None) -> Samples:
    response = await client.get("/metrics", headers=auth or {})
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"] == CONTENT_TYPE
    return samples(await response.text())


def pixels(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (16, 24, 3), dtype=np.uint8)


async def test_a_render_moves_the_step_metrics(client: Client, auth: dict[str, str]) -> None:
    """A run computes its step (executed, timed, by node type); the same run again reuses it
    (cached); the upload and the download are counted in bytes."""
    data = png_bytes(pixels(1))
    image = await upload(client, auth, data)
    first = await start(client, auth, {"recipe": "invert", "inputs": [image["cid"]]})
    assert (await sse(client, first["run_id"]))[-1][1] == "run_completed"
    found = await scrape(client, auth)
    assert value(found, "artdag_steps_executed_total", type="EFFECT") == 1
    assert value(found, "artdag_step_duration_seconds_count", type="EFFECT") == 1
    assert value(found, "artdag_step_duration_seconds_sum", type="EFFECT") > 0
    assert value(found, "artdag_uploaded_bytes_total") == len(data)

    again = await start(client, auth, {"recipe": "invert", "inputs": [image["cid"]]})
    assert (await sse(client, again["run_id"]))[-1][1] == "run_completed"
    served = await (await client.get(f"/cache/{image['cid']}")).read()
    found = await scrape(client, auth)
    assert value(found, "artdag_steps_cached_total", type="EFFECT") == 1
    assert value(found, "artdag_steps_executed_total", type="EFFECT") == 1
    assert value(found, "artdag_served_bytes_total") == len(served) == len(data)
    assert value(found, "artdag_steps_failed_total", type="EFFECT") == 0


async def test_http_requests_are_labelled_by_route_template(client: Client, auth: dict[str, str]) -> None:
    """A run's URL is counted under ``/runs/{run_id}``, never its own path; a path no route
    matches under one fixed label; the status is the one the client got."""
    await client.get("/runs/run-0123456789abcdef", headers=auth)  # 404, a matched route
    for _ in range(3):
        await client.get(f"/no/such/{secrets.token_hex(4)}")
    found = await scrape(client, auth)
    assert value(found, "artdag_http_requests_total", route="/runs/{run_id}", method="GET", status="404") == 1
    assert value(found, "artdag_http_requests_total", route=UNMATCHED_ROUTE, method="GET", status="404") == 3
    assert total(found, "artdag_http_request_duration_seconds_count", route="/runs/{run_id}") == 1
    routes = {dict(labels).get("route") for name, labels in found if name == "artdag_http_requests_total"}
    assert not any("run-0123" in str(route) or "/no/such" in str(route) for route in routes)


async def test_metrics_need_the_admin_token_by_default(client: Client) -> None:
    """Without a token: 401 in the node's error shape; with another token: 401 too."""
    for headers in ({}, {"Authorization": "Bearer not-the-token"}):
        response = await client.get("/metrics", headers=headers)
        assert response.status == 401
        body = await response.json()
        assert body["error"]["code"] == "unauthorized" and body["error"]["message"]


async def test_public_metrics_answer_anyone(settings: Settings, node_client: NodeClient) -> None:
    """ARTDAG_METRICS=public: no token needed; the workers' gauges are read at the scrape."""
    client = await node_client(settings.replace(metrics="public", workers=2))
    found = await scrape(client)
    assert value(found, "artdag_workers") == 2
    assert value(found, "artdag_workers_busy") == 0
    assert value(found, "artdag_active_runs") == 0
    assert value(found, "artdag_ready_steps") == 0
    assert value(found, "artdag_gc_evicted_total", kind="cache_file") == 0  # shown before any GC


async def test_ipfs_and_redis_calls_are_timed(client: Client, auth: dict[str, str]) -> None:
    """An upload goes through IPFS ``add`` and Redis commands: each has latency samples."""
    await upload(client, auth, png_bytes(pixels(2)))
    found = await scrape(client, auth)
    assert value(found, "artdag_ipfs_request_duration_seconds_count", endpoint="add") >= 1
    assert value(found, "artdag_ipfs_request_duration_seconds_count", endpoint="pin/add") >= 1
    assert total(found, "artdag_redis_command_duration_seconds_count") > 0
    assert value(found, "artdag_redis_command_duration_seconds_count", command="EVALSHA") >= 1
    # A script's first EVALSHA answers NOSCRIPT and redis-py loads it: not a failure.
    assert value(found, "artdag_redis_errors_total", command="EVALSHA") == 0


async def test_each_node_counts_on_its_own(settings: Settings, node_client: NodeClient) -> None:
    """Two nodes in one process: an upload to one is not counted by the other."""
    first = await node_client(settings.replace(metrics="public"))
    other = settings.replace(metrics="public", data_dir=settings.data_dir.parent / "other")
    second = await node_client(other)
    token = (settings.data_dir / "admin_token").read_text().strip()
    await upload(first, {"Authorization": f"Bearer {token}"}, png_bytes(pixels(3)))
    assert value(await scrape(first), "artdag_uploaded_bytes_total") > 0
    assert value(await scrape(second), "artdag_uploaded_bytes_total") == 0


async def test_ipfs_errors_are_counted_by_endpoint_and_code(settings: Settings) -> None:
    """A CID the daemon does not hold (offline) and a daemon that is not there."""
    metrics = Metrics()
    async with aiohttp.ClientSession() as session:
        ipfs = IpfsClient(str(settings.ipfs_api), session, timeout_s=5, metrics=metrics)
        with pytest.raises(ContentNotFound):
            await ipfs.cat_all(leaf_cid(secrets.token_bytes(32)), 1024)
        gone = IpfsClient(f"http://127.0.0.1:{closed_port()}", session, timeout_s=5, metrics=metrics)
        with pytest.raises(IpfsUnavailable):
            await gone.id()
    found = samples(metrics.render().decode())
    assert value(found, "artdag_ipfs_errors_total", endpoint="cat", code="not_found") == 1
    assert value(found, "artdag_ipfs_errors_total", endpoint="id", code="ipfs_unavailable") == 1
    assert value(found, "artdag_ipfs_request_duration_seconds_count", endpoint="cat") == 1


async def test_redis_errors_are_counted_by_command() -> None:
    """A command to a Redis that is not there is counted as failed (and timed)."""
    metrics = Metrics()
    client = connect(f"redis://127.0.0.1:{closed_port()}/0", 4, metrics=metrics)
    try:
        with pytest.raises(RedisUnavailable), redis_errors():
            await client.get("anything")
    finally:
        await client.aclose()
    found = samples(metrics.render().decode())
    assert value(found, "artdag_redis_errors_total", command="GET") == 1
    assert value(found, "artdag_redis_command_duration_seconds_count", command="GET") == 1


async def test_a_lapsed_claim_is_taken_over_once(settings: Settings, redis_client: aioredis.Redis) -> None:
    """A claim whose lease lapsed is won as a takeover; a claim after an ordinary release is not."""
    keys = Keys(settings.redis_prefix)
    dead = ClaimBoard(redis_client, keys, "node-a", lease_s=0.2, max_attempts=3)
    alive = ClaimBoard(redis_client, keys, "node-b", lease_s=30, max_attempts=3)
    step = secrets.token_hex(32)
    assert (await dead.claim_or_hit(step, scope="run")).outcome == "won"

    async def taken() -> object:
        claim = await alive.claim_or_hit(step, scope="run")
        return claim if claim.outcome == "won" else None

    claim = await poll_async(taken, timeout_s=10)
    assert claim.took_over
    await alive.release(step, claim.token, "its own failure", scope="run")
    after_release = await alive.claim_or_hit(step, scope="run")
    assert after_release.outcome == "won" and not after_release.took_over


def metric_names() -> set[str]:
    """Every metric of a node as it is queried: counters with ``_total``, histograms bare."""
    return {
        f"{family.name}_total" if family.type == "counter" else family.name
        for family in Metrics().registry.collect()
    }


def test_every_metric_is_documented_and_the_dashboard_names_only_metrics() -> None:
    """docs/operations.md has a row for each metric; the Grafana dashboard queries nothing else."""
    docs = Path(__file__).resolve().parent.parent / "docs"
    table = (docs / "operations.md").read_text()
    assert [name for name in sorted(metric_names()) if f"| `{name}` |" not in table] == []
    dashboard = json.loads((docs / "grafana-dashboard.json").read_text())
    queried = {
        re.sub(r"_bucket$", "", name)
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"artdag_\w+", target["expr"])
    }
    assert queried and queried <= metric_names()
