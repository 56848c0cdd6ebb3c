"""Session daemons (a real redis-server and IPFS daemon, started through node/services.py) and
per-test settings that isolate each test under its own Redis key prefix and data directory."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from aiohttp import web

from node.assembly import Node
from node.config import Settings
from node.http import create_app
from node.services import EmbeddedServices
from node.sync.connection import connect
from node.testing import NodeProcess
from tests.helpers import AiohttpClient, Client, NodeClient
from tests.l2_server import TestL2, running_l2


@pytest.fixture(scope="session")
def daemons(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServices]:
    """One redis-server and one IPFS daemon for the whole session, on free loopback ports."""
    with EmbeddedServices(Settings(data_dir=tmp_path_factory.mktemp("daemons"))) as services:
        yield services


@pytest.fixture
def redis_only(daemons: EmbeddedServices, tmp_path: Path) -> Settings:
    """Settings that embed only Redis (IPFS is the session daemon), so a start takes < 1 s."""
    return Settings(data_dir=tmp_path / "own-redis", ipfs_api=daemons.settings.ipfs_api)


@pytest.fixture
def own_redis(redis_only: Settings) -> Iterator[EmbeddedServices]:
    """A redis-server of this test's own, which the test may kill."""
    with EmbeddedServices(redis_only) as embedded:
        yield embedded


@pytest.fixture
def own_ipfs(daemons: EmbeddedServices, tmp_path: Path) -> Iterator[EmbeddedServices]:
    """An IPFS daemon of this test's own (Redis from the session), which the test may kill."""
    with EmbeddedServices(
        Settings(data_dir=tmp_path / "own-ipfs", redis_url=daemons.settings.redis_url)
    ) as embedded:
        yield embedded


@pytest.fixture
def settings(daemons: EmbeddedServices, tmp_path: Path) -> Iterator[Settings]:
    """Settings pointing at the session daemons, with a key prefix and data dir of this test's."""
    prefix = f"test-{uuid.uuid4().hex[:12]}:"
    yield daemons.settings.replace(data_dir=tmp_path / "node", redis_prefix=prefix)
    assert daemons.settings.redis_url is not None
    cleanup = redis.Redis.from_url(daemons.settings.redis_url)
    try:
        for key in cleanup.scan_iter(match=f"{prefix}*", count=1000):
            cleanup.delete(key)
    finally:
        cleanup.close()


@pytest.fixture
async def redis_client(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    """An asyncio Redis client on the session server (this test's key prefix is in settings)."""
    assert settings.redis_url is not None
    client = connect(settings.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def node_client(aiohttp_client: AiohttpClient) -> AsyncIterator[NodeClient]:
    """Opens nodes and test clients for their apps (see ``NodeClient``)."""
    async with contextlib.AsyncExitStack() as stack:

        async def open_client(
            settings: Settings,
            services: EmbeddedServices | None = None,
            *,
            routes: Callable[[web.Application], object] | None = None,
        ) -> Client:
            node = await stack.enter_async_context(Node.open(settings, services))
            app = create_app(node)
            if routes is not None:
                routes(app)
            client = await aiohttp_client(app)
            stack.push_async_callback(client.close)  # before its node closes
            return client

        yield open_client


@pytest.fixture
async def client(settings: Settings, node_client: NodeClient) -> Client:
    """A test client for the node's app on the session daemons."""
    return await node_client(settings)


@pytest.fixture
def auth(client: Client, settings: Settings) -> dict[str, str]:
    """Headers carrying the local-mode admin token the app created on start."""
    token = (settings.data_dir / "admin_token").read_text().strip()
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def running_node(
    daemons: EmbeddedServices, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NodeProcess]:
    """A `python -m node` child on the session daemons (its own key prefix), for clients that
    must reach a real port: the fuzzer and the CLI."""
    with node_process(daemons, tmp_path_factory.mktemp("running-node")) as node:
        yield node


@contextlib.contextmanager
def node_process(daemons: EmbeddedServices, where: Path, **settings: str) -> Iterator[NodeProcess]:
    """A healthy `python -m node` child on the session daemons, with its own key prefix and
    data directory under ``where`` and any other ``ARTDAG_*`` settings; stopped afterwards."""
    env = {
        "ARTDAG_REDIS_URL": str(daemons.settings.redis_url),
        "ARTDAG_IPFS_API": str(daemons.settings.ipfs_api),
        "ARTDAG_REDIS_PREFIX": f"test-{uuid.uuid4().hex[:12]}:",
        "ARTDAG_LOG_LEVEL": "WARNING",
        **settings,
    }
    node = NodeProcess(where / "node", env)
    try:
        node.wait_healthy()
        yield node
    finally:
        node.popen.terminate()
        node.popen.wait(timeout=30)


L2_PUBLIC_URL = "http://l1.test:8100"  # the public URL of nodes that trust a test L2


@pytest.fixture
async def l2() -> AsyncIterator[TestL2]:
    """A small L2 (``tests/l2_server.py``) on a free port."""
    async with running_l2() as server:
        yield server


@pytest.fixture
async def l2_node(settings: Settings, l2: TestL2, node_client: NodeClient) -> Client:
    """A node trusting ``l2`` only, known as L2_PUBLIC_URL, reusing an L2 answer for 60 s."""
    trusting = settings.replace(l2_trusted=(l2.url,), public_url=L2_PUBLIC_URL, l2_verify_ttl=60.0)
    return await node_client(trusting)
