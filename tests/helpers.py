"""Small helpers shared by the tests."""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient

if TYPE_CHECKING:
    from node.config import Settings
    from node.services import EmbeddedServices

Client = TestClient[web.Request, web.Application]
AiohttpClient = Callable[[web.Application], Awaitable[Client]]


class NodeClient(Protocol):
    """The ``node_client`` fixture: opens a node (``Node.open``) and a test client for its app;
    ``routes`` may add routes first. Both close at teardown, the client first."""

    def __call__(
        self,
        settings: Settings,
        services: EmbeddedServices | None = None,
        *,
        routes: Callable[[web.Application], object] | None = None,
    ) -> Awaitable[Client]: ...


def closed_port() -> int:
    """A loopback port with nothing listening on it (for 'dependency down' cases)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout_s: float = 30.0, interval_s: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s} s: {predicate}")


async def wait_until_async(predicate: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    """:func:`wait_until` for async tests: polls without blocking the event loop."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout_s} s: {predicate}")


async def poll_async(check: Callable[[], Awaitable[Any]], timeout_s: float = 30.0) -> Any:
    """Await ``check()`` until it returns something truthy; that value. Fails after the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout_s} s: {check}")


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def slow_recipe(sigma: float) -> str:
    """A one-step recipe whose step takes a while on a large image: a wide Gaussian blur."""
    return (
        "name: slow\ndag:\n  nodes:\n    - {id: src, type: SOURCE, config: {input: true}}\n"
        f"    - {{id: out, type: EFFECT, config: {{effect: blur, sigma: {sigma}}}, inputs: [src]}}\n"
        "  output: out\n"
    )


async def upload(
    client: Client, auth: dict[str, str], data: bytes, name: str | None = None
) -> dict[str, Any]:
    form = aiohttp.FormData()
    if name:
        form.add_field("name", name)
    form.add_field("file", io.BytesIO(data), filename="f")
    response = await client.post("/cache/upload", data=form, headers=auth)
    assert response.status in (200, 201), await response.text()
    return dict(await response.json())


CHUNKED_FORM_TYPE = "multipart/form-data; boundary=B"  # the Content-Type of ``chunked_form``


async def chunked_form(chunks: int, chunk_size: int = 10_000) -> AsyncIterator[bytes]:
    """A multipart body whose 'file' is ``chunks`` random chunks, sent chunked: no Content-Length."""
    yield b'--B\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n\r\n'
    for _ in range(chunks):
        yield os.urandom(chunk_size)
    yield b"\r\n--B--\r\n"


async def start(client: Client, auth: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/runs", json=body, headers=auth)
    assert response.status == 202, await response.text()
    return dict(await response.json())


async def sse(
    client: Client, run_id: str, last_event_id: str | None = None
) -> list[tuple[str, str, dict[str, Any]]]:
    """All (id, event, data) of a run's event stream, read to its end."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    response = await client.get(f"/runs/{run_id}/events", headers=headers)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    events: list[tuple[str, str, dict[str, Any]]] = []
    fields: dict[str, str] = {}
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if "data" in fields:
                events.append((fields.get("id", ""), fields.get("event", ""), json.loads(fields["data"])))
            fields = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(": ")
            fields[key] = value
    return events
