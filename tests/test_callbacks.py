"""Notifications: a run's callback URL gets a POST of the run when it ends, signed with the
node's Ed25519 key (checked here with the key GET /identity gives, by the cryptography
library), retried when the receiver fails, and still delivered after the node that queued it
stopped. The receiver is a small local server standing for an artist's service."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from node.assembly import Node
from node.config import Settings
from node.executor.binding import bind, resolve_recipe
from node.executor.callbacks import NODE_HEADER, SIGNATURE_HEADER
from node.pixels.imaging import png_bytes
from node.sync.callbacks import CallbackQueue
from node.sync.keys import Keys
from tests.helpers import NodeClient, closed_port, poll_async, upload, wait_until_async

IMAGE = png_bytes(np.random.default_rng(9).integers(0, 256, (8, 8, 3), np.uint8))


@dataclass
class Receiver:
    """Answers each POST with the next of ``statuses`` (then 200), keeping what it got."""

    statuses: list[int] = field(default_factory=list)
    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.got.append((dict(request.headers), await request.read()))
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)


@contextlib.asynccontextmanager
async def serving(port: int = 0) -> AsyncIterator[Receiver]:
    """A receiver listening on ``port`` (0: any free one) while the block runs."""
    found = Receiver()
    app = web.Application()
    app.router.add_post("/hook", found.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    found.url = f"http://127.0.0.1:{bound}/hook"
    try:
        yield found
    finally:
        await runner.cleanup()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serving() as found:
        yield found


def admin(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {(settings.data_dir / 'admin_token').read_text().strip()}"}


def verified(headers: dict[str, str], body: bytes, public_key: str) -> bool:
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key))
    try:
        key.verify(base64.b64decode(headers[SIGNATURE_HEADER]), body)
    except Exception:
        return False
    return True


async def test_a_run_s_callback_is_signed_and_retried(
    settings: Settings, node_client: NodeClient, receiver: Receiver
) -> None:
    """The receiver fails the first delivery (503): the node tries again and the second
    arrives; its body is the completed run, and its signature checks out with the public key
    of GET /identity (and fails for other bytes)."""
    client = await node_client(settings.replace(callback_hosts=("127.0.0.1",)))
    auth = admin(settings)
    receiver.statuses = [503]
    image = await upload(client, auth, IMAGE)
    run = await (
        await client.post(
            "/runs",
            json={"recipe": "invert", "inputs": [image["cid"]], "callback": receiver.url},
            headers=auth,
        )
    ).json()
    await wait_until_async(lambda: len(receiver.got) >= 2, timeout_s=30)
    headers, body = receiver.got[-1]
    record = json.loads(body)
    assert record["run_id"] == run["run_id"] and record["status"] == "completed" and record["output"]
    identity = await (await client.get("/identity")).json()
    assert headers[NODE_HEADER] == identity["node_id"]
    assert verified(headers, body, identity["public_key"])
    assert not verified(headers, body.replace(b"completed", b"cancelled"), identity["public_key"])
    assert receiver.got[0][1] == body  # the same record, signed the same, tried again


@pytest.mark.parametrize(
    ("hosts", "url", "said"),
    [
        ((), "http://10.1.2.3/hook", "is an internal address"),
        ((), "http://127.0.0.1:9/hook", "is an internal address"),
        ((), "ftp://example.org/hook", "http:// or https://"),
        (("hooks.example",), "https://elsewhere.example/hook", "ARTDAG_CALLBACK_HOSTS"),
    ],
)
async def test_a_callback_that_may_not_be_called_is_400(
    settings: Settings, node_client: NodeClient, hosts: tuple[str, ...], url: str, said: str
) -> None:
    client = await node_client(settings.replace(callback_hosts=hosts))
    auth = admin(settings)
    image = await upload(client, auth, IMAGE)
    answer = await client.post(
        "/runs", json={"recipe": "invert", "inputs": [image["cid"]], "callback": url}, headers=auth
    )
    assert answer.status == 400
    error = (await answer.json())["error"]
    assert error["details"]["field"] == "callback" and said in error["message"]
    assert (await (await client.get("/runs")).json())["items"] == []


async def test_a_callback_outlives_the_node_that_queued_it(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    """The receiver is down while the run ends: the node tries, fails and queues the callback
    again in Redis; that node stops; the receiver comes up; another node on the same Redis
    delivers it."""
    allowed = settings.replace(callback_hosts=("127.0.0.1",))
    port = closed_port()  # nothing listens there yet
    url = f"http://127.0.0.1:{port}/hook"
    queue = CallbackQueue(redis_client, Keys(settings.redis_prefix))
    async with Node.open(allowed) as first:
        recipe, entry = await resolve_recipe(first.store, "invert")
        source = (await first.store.put_bytes(IMAGE, max_size=10**6, owner="admin")).entry
        submission = await bind(
            first.store, recipe, entry, inputs=[source.cid], owner="admin", output_name=""
        )
        run = await first.run_manager.submit(dataclasses.replace(submission, callback=url))
        await first.run_manager.wait(run["run_id"])
        await poll_async(lambda: _tried(queue), timeout_s=30)  # tried once, and waiting in Redis
    assert [callback.run_id for callback, _ in await queue.pending()] == [run["run_id"]]
    async with serving(port) as receiver, Node.open(allowed):
        await wait_until_async(lambda: receiver.got, timeout_s=30)
    assert json.loads(receiver.got[0][1])["run_id"] == run["run_id"]
    assert await queue.pending() == []


async def _tried(queue: CallbackQueue) -> bool:
    return any(callback.attempt >= 1 for callback, _ in await queue.pending())
