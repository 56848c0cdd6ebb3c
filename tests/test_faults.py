"""Faults and load, fast versions of ``bench/chaos.py``: a bounded Redis pool that waits rather
than failing, followers that never starve requests, a bound on queued work answered before
accepting, outages that delay runs and never fail them, killed workers retried without counting,
attempts that belong to one run, claims taken back at start, and daemons that come back."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis.asyncio as aioredis

from node.assembly import Node
from node.config import Settings
from node.executor.planner import make_plan
from node.executor.recipe import builtin_recipe
from node.http.appkeys import NODE
from node.identity import load_or_create
from node.pixels.imaging import png_bytes
from node.services import EmbeddedServices
from node.sync.keys import Keys
from tests.conftest import node_process
from tests.helpers import Client, NodeClient, poll_async, slow_recipe, upload, wait_until, wait_until_async

RNG = np.random.default_rng(20)


def token(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {(settings.data_dir / 'admin_token').read_text().strip()}"}


def image(side: int = 64) -> bytes:
    return png_bytes(RNG.integers(0, 256, (side, side, 3), np.uint8))


async def start(client: Client, auth: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/runs", json=body, headers=auth)
    assert response.status == 202, await response.text()
    return dict(await response.json())


async def slow_run(client: Client, auth: dict[str, str], sigma: float = 12) -> dict[str, Any]:
    """A run whose one step takes a few seconds (a wide blur of a large image)."""
    source = await upload(client, auth, image(900))
    recipe = await client.post("/recipes/upload", data=slow_recipe(sigma), headers=auth)
    assert recipe.status == 201, await recipe.text()
    return await start(client, auth, {"recipe": (await recipe.json())["id"], "inputs": [source["cid"]]})


async def finished(client: Client, run_id: str, timeout_s: float = 120) -> dict[str, Any]:
    async def final() -> dict[str, Any] | None:
        response = await client.get(f"/runs/{run_id}")
        if response.status == 503:  # Redis down for a moment: ask again
            return None
        record = dict(await response.json())
        return record if record["status"] in ("completed", "failed", "cancelled") else None

    return dict(await poll_async(final, timeout_s=timeout_s))


async def test_requests_beyond_the_redis_pool_wait_instead_of_failing(
    settings: Settings, node_client: NodeClient
) -> None:
    """With 4 Redis connections, 120 concurrent reads that each need Redis all answer 200."""
    client = await node_client(settings.replace(redis_connections=4))
    answers = await asyncio.gather(*(client.get("/assets") for _ in range(120)))
    assert [answer.status for answer in answers] == [200] * 120


async def test_followers_never_starve_requests(settings: Settings, node_client: NodeClient) -> None:
    """Twelve clients following a long run's events (each a blocking read) leave the 4
    connections of requests free: reads answer at once meanwhile."""
    client = await node_client(settings.replace(redis_connections=4))
    auth = token(settings)
    run = await slow_run(client, auth, sigma=30)
    followers = [asyncio.create_task(client.get(f"/runs/{run['run_id']}/events")) for _ in range(12)]
    try:
        answers = await asyncio.wait_for(asyncio.gather(*(client.get("/assets") for _ in range(40))), 20)
        assert [answer.status for answer in answers] == [200] * 40
    finally:
        await client.post(f"/runs/{run['run_id']}/cancel", headers=auth)
        for follower in followers:
            follower.cancel()
        await asyncio.gather(*followers, return_exceptions=True)


async def test_a_full_queue_is_503_before_anything_is_accepted(
    settings: Settings, node_client: NodeClient, redis_client: aioredis.Redis
) -> None:
    """Beyond ARTDAG_MAX_QUEUED unfinished runs, POST /runs answers 503 queue_full with
    Retry-After and writes nothing; the run accepted before goes on."""
    client = await node_client(settings.replace(max_queued=1))
    auth = token(settings)
    first = await slow_run(client, auth, sigma=8)
    keys = Keys(settings.redis_prefix)
    before = await redis_client.zcard(keys.runs)
    body = {"recipe": "invert", "inputs": [first["inputs"][0]["content_id"]]}
    refused = await client.post("/runs", json=body, headers=auth)
    assert refused.status == 503
    assert refused.headers["Retry-After"].isdigit()
    assert (await refused.json())["error"]["code"] == "queue_full"
    assert await redis_client.zcard(keys.runs) == before
    assert (await finished(client, first["run_id"]))["status"] == "completed"


async def test_an_ipfs_outage_delays_a_run_and_never_fails_it(
    own_ipfs: EmbeddedServices,
    settings: Settings,
    node_client: NodeClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The IPFS daemon killed while a step computes: the run is interrupted, not failed; once
    the daemon is back, it resumes by itself and completes, with no step failed."""
    caplog.set_level(logging.WARNING, logger="node.executor.run_manager")
    client = await node_client(settings.replace(ipfs_api=own_ipfs.settings.ipfs_api, retry_max=2.0))
    auth = token(settings)
    run = await slow_run(client, auth, sigma=10)
    await wait_until_async(lambda: client.app[NODE].pool.busy_pids, timeout_s=60)
    pid = own_ipfs.processes["ipfs"].pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    await wait_until_async(
        lambda: any("interrupted" in record.getMessage() for record in caplog.records), timeout_s=120
    )
    await asyncio.to_thread(own_ipfs.restart, "ipfs")
    record = await finished(client, run["run_id"])
    assert record["status"] == "completed", record
    kinds = [event["kind"] for _, event in await client.app[NODE].runs.events.read(run["run_id"])]
    assert "step_failed" not in kinds and kinds[-1] == "run_completed"


async def test_a_redis_death_is_supervised_and_the_run_completes(
    own_redis: EmbeddedServices, node_client: NodeClient
) -> None:
    """The embedded redis-server killed during a run: the node starts it again by itself and
    the run, accepted before, completes."""
    client = await node_client(own_redis.settings, own_redis)
    auth = token(own_redis.settings)
    run = await slow_run(client, auth, sigma=10)
    await wait_until_async(lambda: client.app[NODE].pool.busy_pids, timeout_s=60)
    pid = own_redis.processes["redis"].pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    record = await finished(client, run["run_id"], timeout_s=180)
    assert record["status"] == "completed", record
    assert own_redis.processes["redis"].pid != pid  # a new redis-server, on the same data


async def test_a_killed_ipfs_daemon_comes_back_by_itself(
    own_ipfs: EmbeddedServices, node_client: NodeClient
) -> None:
    """The node's embedded Kubo killed: /health is 503 while it is down and 200 again after,
    with no one touching the node."""
    client = await node_client(own_ipfs.settings, own_ipfs)
    assert (await client.get("/health")).status == 200
    pid = own_ipfs.processes["ipfs"].pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)

    async def status() -> int:
        return (await client.get("/health")).status

    await poll_async(lambda: _is(status(), 503), timeout_s=30)
    await poll_async(lambda: _is(status(), 200), timeout_s=120)
    assert own_ipfs.processes["ipfs"].pid != pid


async def _is(pending: Any, wanted: int) -> bool:
    return bool(await pending == wanted)


async def test_a_killed_worker_is_retried_and_not_counted(
    settings: Settings, node_client: NodeClient
) -> None:
    """With one attempt per step, a step whose worker is killed from outside (SIGKILL) is
    tried again rather than failing the run."""
    client = await node_client(settings.replace(attempts=1))
    auth = token(settings)
    run = await slow_run(client, auth, sigma=10)
    pids = await wait_until_async(lambda: client.app[NODE].pool.busy_pids, timeout_s=60)
    os.kill(pids[0], signal.SIGKILL)
    record = await finished(client, run["run_id"])
    assert record["status"] == "completed", record


async def test_a_worker_killed_while_idle_fails_nothing(settings: Settings, node_client: NodeClient) -> None:
    """A worker killed between jobs is noticed and replaced: the next step, with one attempt,
    still completes (found by bench/chaos.py: the next job's write failed the run)."""
    client = await node_client(settings.replace(attempts=1, workers=1))
    auth = token(settings)
    source = await upload(client, auth, image())
    first = await start(client, auth, {"recipe": "invert", "inputs": [source["cid"]]})
    assert (await finished(client, first["run_id"]))["status"] == "completed"
    idle = await wait_until_async(lambda: client.app[NODE].pool.idle_pids, timeout_s=30)
    os.kill(idle[0], signal.SIGKILL)
    second = await start(client, auth, {"recipe": "sepia", "inputs": [source["cid"]]})
    record = await finished(client, second["run_id"])
    assert record["status"] == "completed", record


async def test_attempts_belong_to_one_run(
    settings: Settings, node_client: NodeClient, redis_client: aioredis.Redis
) -> None:
    """A step another run exhausted its attempts on (and a count left by an older node with no
    run scope) does not fail a new run of it: attempts belong to a try."""
    client = await node_client(settings)
    auth = token(settings)
    source = await upload(client, auth, image())
    plan = make_plan(builtin_recipe("invert"), "recipe", {"input": source["content_id"]})
    step = next(step for step in plan.steps if step.type != "SOURCE")
    keys = Keys(settings.redis_prefix)
    for stale in (keys.attempts(step.cache_id, "run-0123456789abcdef"), keys.attempts(step.cache_id)):
        await redis_client.hset(stale, mapping={"count": 99, "error": "an earlier run's failure"})
    run = await start(client, auth, {"recipe": "invert", "inputs": [source["cid"]]})
    record = await finished(client, run["run_id"])
    assert record["status"] == "completed", record


async def test_a_restarted_node_takes_back_its_claims_at_once(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    """A claim an earlier life of this node held (it was killed before releasing it) is gone
    as soon as the node is open again; another node's claim stays."""
    keys = Keys(settings.redis_prefix)
    node_id = (await asyncio.to_thread(load_or_create, settings.data_dir)).node_id  # its key, kept
    mine, theirs = keys.claim("a" * 64), keys.claim("b" * 64)
    await redis_client.set(mine, f"{node_id}:0123456789abcdef", px=60_000)
    await redis_client.set(theirs, "z6Mkother:0123456789abcdef", px=60_000)
    async with Node.open(settings) as node:
        assert node.identity.node_id == node_id
        assert not await redis_client.exists(mine)
        assert await redis_client.exists(theirs)


async def test_a_body_over_its_limit_is_413_before_it_is_read(
    settings: Settings, node_client: NodeClient
) -> None:
    """A JSON body over 64 KiB, declared or sent, and a recipe over its limit answer 413
    too_large (the code the docs name, aiohttp's own 413 included)."""
    client = await node_client(settings)
    auth = token(settings)
    big = {"recipe": "invert", "inputs": ["x" * 70_000]}
    answer = await client.post("/runs", json=big, headers=auth)
    assert answer.status == 413 and (await answer.json())["error"]["code"] == "too_large"
    recipe = await client.post("/recipes/upload", data=b"#" * 300_000, headers=auth)
    assert recipe.status == 413 and (await recipe.json())["error"]["code"] == "too_large"
    huge = await client.post("/recipes/upload", data=io.BytesIO(b"#" * (2 * 1024**2)), headers=auth)
    assert huge.status == 413 and (await huge.json())["error"]["code"] == "too_large"


async def test_a_slow_body_is_408_within_the_deadline(settings: Settings, node_client: NodeClient) -> None:
    """Ten bytes of a declared 60 KB JSON body, then nothing: 408 once ARTDAG_BODY_TIMEOUT is
    spent, not a connection held for ever."""
    client = await node_client(settings.replace(body_timeout=1.0))
    url = client.make_url("/runs")
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        head = (
            f"POST /runs HTTP/1.1\r\nHost: {url.host}\r\nContent-Type: application/json\r\n"
            f"Authorization: {token(settings)['Authorization']}\r\nContent-Length: 60000\r\n\r\n"
        )
        writer.write(head.encode() + b'{"recipe":')
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 15)
    finally:
        writer.close()
    assert status_line.split()[1] == b"408", status_line


async def _stalled(client: Client, head: str, sent: bytes) -> bytes:
    """Send a request head and the first bytes of its body, then nothing: the status line."""
    url = client.make_url("/")
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        writer.write(head.encode() + sent)
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), 15)
    finally:
        writer.close()


@pytest.mark.parametrize(
    "sent", [b"", b"--b\r\nContent-Disposition: form-data; name=file; filename=f\r\n\r\nabc"]
)
async def test_a_stalled_upload_is_408_and_stores_nothing(
    settings: Settings, node_client: NodeClient, sent: bytes
) -> None:
    """An upload declaring 10 MB whose body never starts, or stops after three bytes of the
    file: 408 once ARTDAG_BODY_TIMEOUT passes with no byte, and nothing is stored or pinned."""
    client = await node_client(settings.replace(body_timeout=1.0))
    head = (
        f"POST /cache/upload HTTP/1.1\r\nHost: localhost\r\n{_header(token(settings))}"
        "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 10000000\r\n\r\n"
    )
    status_line = await _stalled(client, head, sent)
    assert status_line.split()[1] == b"408", status_line
    listing = await (await client.get("/cache", headers=token(settings))).json()
    assert listing["items"] == []


def _header(auth: dict[str, str]) -> str:
    return "".join(f"{name}: {value}\r\n" for name, value in auth.items())


def test_an_unfinished_request_head_is_closed_within_the_deadline(
    daemons: EmbeddedServices, tmp_path: Path
) -> None:
    """A client that sends half a request head and then nothing (slowloris) is disconnected
    once ARTDAG_BODY_TIMEOUT passes, by the node as it runs (``python -m node``)."""
    with node_process(daemons, tmp_path, ARTDAG_BODY_TIMEOUT="1") as node:
        address = node.url.removeprefix("http://").split(":")
        with socket.create_connection((address[0], int(address[1])), timeout=15) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
            assert sock.recv(1024) == b""  # closed by the node, without an answer (not after an hour)


def test_a_client_that_stops_following_a_run_is_no_error(daemons: EmbeddedServices, tmp_path: Path) -> None:
    """A follower that goes away mid-run (Ctrl-C on the README's curl -N, leaving the run page),
    on the node as it runs: its stream ends quietly when the next event finds it gone; no
    ERROR, no 500 in the node's log, and the run completes."""
    with node_process(daemons, tmp_path, ARTDAG_LOG_LEVEL="INFO") as node:
        source = node.upload(image(300))
        body = json.dumps({"recipe": "wait", "inputs": [source["cid"]], "params": {"seconds": 2}}).encode()
        run = node.call("POST", "/runs", body, **{"Content-Type": "application/json"})
        host, port = node.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=15) as sock:
            sock.sendall(f"GET /runs/{run['run_id']}/events HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            received = b""
            while b"event: " not in received:  # following, then Ctrl-C
                received += sock.recv(65536)
        wait_until(lambda: node.call("GET", f"/runs/{run['run_id']}")["status"] == "completed", timeout_s=60)
        wait_until(lambda: f"event stream of {run['run_id']}: the client left" in node.log_path.read_text())
        log = node.log_path.read_text()
        assert "ERROR" not in log and "Traceback" not in log and '" 500 ' not in log, log
