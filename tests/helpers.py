"""Small helpers shared by the tests."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

Client = TestClient[web.Request, web.Application]
AiohttpClient = Callable[[web.Application], Awaitable[Client]]


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
