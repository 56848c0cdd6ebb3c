"""Redis emptied under a node (#21 items 1 and 2): revocations that win whatever happened to
Redis (a synced 0600 file, restored with their expiries, the union of the nodes sharing a
Redis), and an emptied Redis noticed within seconds on an idle node, restored from its last
state while ``/health`` says so. Each test has a redis-server of its own, emptied by FLUSHALL."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from node.assembly import Node
from node.auth.l2 import token_hash
from node.auth.revocation_file import REVOCATIONS_FILE
from node.config import Settings
from node.http.appkeys import NODE
from node.services import EmbeddedServices
from node.sync.connection import connect, scored_members
from node.sync.keys import Keys
from tests.conftest import L2_PUBLIC_URL
from tests.helpers import Client, NodeClient, poll_async, upload
from tests.l2_server import TestL2

WATCH_S = 0.2


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def admin(settings: Settings) -> dict[str, str]:
    return bearer((settings.data_dir / "admin_token").read_text().strip())


@pytest.fixture
async def shared_redis(own_redis: EmbeddedServices) -> AsyncIterator[aioredis.Redis]:
    """A client of the test's own redis-server."""
    assert own_redis.settings.redis_url is not None
    client = connect(own_redis.settings.redis_url)
    yield client
    await client.aclose()


def trusting(settings: Settings, l2: TestL2, data_dir: Path | None = None) -> Settings:
    return settings.replace(
        l2_trusted=(l2.url,),
        public_url=L2_PUBLIC_URL,
        l2_verify_ttl=60.0,
        redis_watch=WATCH_S,
        data_dir=data_dir or settings.data_dir,
    )


async def revoked_in_redis(client: aioredis.Redis, settings: Settings) -> dict[str, float]:
    return dict(await scored_members(client, Keys(settings.redis_prefix).revocations()))


def revocations_on_disk(settings: Settings) -> str:
    return (settings.data_dir / REVOCATIONS_FILE).read_text()


async def test_a_revocation_is_on_disk_before_the_answer_and_wins_over_an_emptied_redis(
    own_redis: EmbeddedServices, shared_redis: aioredis.Redis, node_client: NodeClient, l2: TestL2
) -> None:
    """/auth/revoke answers once the revocation is in a 0600 file; after FLUSHALL the token is
    refused on the very next request (before anything was restored), and the revocation comes
    back into Redis with the expiry it had."""
    settings = trusting(own_redis.settings, l2).replace(redis_watch=600)  # the test looks itself
    node = await node_client(settings, own_redis)
    token = l2.issue("alice", L2_PUBLIC_URL)
    assert (await upload_status(node, bearer(token), b"before")) == 201
    assert (await node.post("/auth/revoke", json={"token": token})).status == 200
    assert token_hash(token) in revocations_on_disk(settings)
    assert stat.S_IMODE((settings.data_dir / REVOCATIONS_FILE).stat().st_mode) == 0o600
    expiry = (await revoked_in_redis(shared_redis, settings))[token_hash(token)]

    await shared_redis.flushall()
    assert (await upload_status(node, bearer(token), b"after")) == 401
    assert await revoked_in_redis(shared_redis, settings) == {}  # refused by the node's own record
    assert await node.app[NODE].redis_watch.check()  # the watch's next look: emptied, restored
    assert (await revoked_in_redis(shared_redis, settings))[token_hash(token)] == expiry


async def test_a_restarted_node_refuses_a_token_revoked_before_redis_was_emptied(
    own_redis: EmbeddedServices, shared_redis: aioredis.Redis, l2: TestL2
) -> None:
    """The node stops, Redis is emptied, the node starts again: the token is still refused."""
    settings = trusting(own_redis.settings, l2)
    token = l2.issue("alice", L2_PUBLIC_URL)
    async with Node.open(settings) as node:
        assert node.auth.revocations is not None
        await node.auth.revocations.revoke(token_hash(token))
    await shared_redis.flushall()
    async with Node.open(settings) as node:
        assert await node.auth.authenticate(token) is None
        assert token_hash(token) in await revoked_in_redis(shared_redis, settings)


async def test_nodes_sharing_a_redis_restore_the_union_of_their_revocations(
    own_redis: EmbeddedServices,
    shared_redis: aioredis.Redis,
    node_client: NodeClient,
    l2: TestL2,
    tmp_path: Path,
) -> None:
    """Each of two nodes revokes a token; each learns the other's into its own file, so after
    FLUSHALL, with the first node gone, the second alone restores both."""
    first_settings = trusting(own_redis.settings, l2)
    second_settings = trusting(own_redis.settings, l2, tmp_path / "second")
    first = await node_client(first_settings, own_redis)
    second = await node_client(second_settings)
    one, other = l2.issue("alice", L2_PUBLIC_URL), l2.issue("bob", L2_PUBLIC_URL)
    assert (await first.post("/auth/revoke", json={"token": one})).status == 200
    assert (await second.post("/auth/revoke", json={"token": other})).status == 200

    async def learnt() -> bool:
        return token_hash(one) in revocations_on_disk(second_settings)

    await poll_async(learnt, timeout_s=15)
    await first.app[NODE].redis_watch.close()  # the first node no longer restores anything
    await shared_redis.flushall()

    async def both_back() -> bool:
        shared = await revoked_in_redis(shared_redis, second_settings)
        return {token_hash(one), token_hash(other)} <= set(shared)

    await poll_async(both_back, timeout_s=15)
    for token in (one, other):
        assert (await upload_status(second, bearer(token), token.encode()[-6:])) == 401


async def test_an_idle_node_notices_an_emptied_redis_and_restores_its_state(
    own_redis: EmbeddedServices, shared_redis: aioredis.Redis, node_client: NodeClient
) -> None:
    """Content stored and published; FLUSHALL; with no write to wake it, the node restores its
    content from its last published state within seconds."""
    # The publisher waits up to 30 s to publish (the debounce is long), so only the watch can
    # bring the content back within the deadline.
    settings = own_redis.settings.replace(redis_watch=WATCH_S, state_debounce=3600)
    node = await node_client(settings, own_redis)
    stored = await upload(node, admin(settings), b"kept across a FLUSHALL")
    await published(node)
    await shared_redis.flushall()

    async def back() -> bool:
        return (await node.get(f"/cache/{stored['content_id']}")).status == 200

    await poll_async(back, timeout_s=10)


async def test_health_says_so_while_an_emptied_redis_is_being_restored(
    own_redis: EmbeddedServices,
    own_ipfs: EmbeddedServices,
    shared_redis: aioredis.Redis,
    node_client: NodeClient,
) -> None:
    """The last state cannot be read back while IPFS is down: /health is 503 with Redis marked
    ``restoring`` and why; once IPFS is back the node restores by itself and /health is 200."""
    settings = own_redis.settings.replace(ipfs_api=own_ipfs.settings.ipfs_api, redis_watch=WATCH_S)
    node = await node_client(settings, own_redis)
    stored = await upload(node, admin(settings), b"restored once IPFS is back")
    await published(node)
    pid = own_ipfs.processes["ipfs"].pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    await shared_redis.flushall()

    async def restoring() -> dict[str, Any] | None:
        response = await node.get("/health")
        body = await response.json()
        redis_check = body["error"]["details"]["checks"]["redis"] if response.status == 503 else {}
        return redis_check if redis_check.get("restoring") else None

    check = await poll_async(restoring, timeout_s=20)
    assert check["healthy"] is False and "emptied" in check["error"]
    await asyncio.to_thread(own_ipfs.restart, "ipfs")

    async def healthy_and_back() -> bool:
        if (await node.get("/health")).status != 200:
            return False
        return (await node.get(f"/cache/{stored['content_id']}")).status == 200

    await poll_async(healthy_and_back, timeout_s=30)


async def published(node: Client) -> None:
    """Publish the node's state now, with what was stored (as its publisher would shortly)."""
    await node.app[NODE].publisher.publish()


async def upload_status(client: Client, headers: dict[str, str], data: bytes) -> int:
    form = aiohttp.FormData()
    form.add_field("file", io.BytesIO(data), filename="f")
    return (await client.post("/cache/upload", data=form, headers=headers)).status
