"""Notifications: a run that names a ``callback`` URL gets a POST there when it completes,
fails or is cancelled.

The body is the run's record (JSON), signed with the node's Ed25519 key: header
``X-ArtDAG-Signature`` is the signature of the body's exact bytes (base64), ``X-ArtDAG-Node``
the node id, whose public key ``GET /identity`` gives anyone who wants to check it. A delivery
that fails (no answer, not 2xx) is tried again after 1 s, 2 s, 4 s ... up to an hour, at most
``MAX_ATTEMPTS`` times; the queue is in Redis (``node.sync.callbacks``), so it outlives a
restart and any node of the cluster delivers what is due.

Where a callback may go is checked when the run is submitted (400 otherwise) and again before
each delivery (a name may resolve elsewhere by then): http or https, and a host in
``ARTDAG_CALLBACK_HOSTS`` when that is set; otherwise any host whose addresses are all public
(no loopback, private, link-local or reserved address: the node is no way into its own network).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import json
import logging
import re
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from node.errors import InvalidInput, NodeError
from node.identity import NodeIdentity
from node.sync.callbacks import Callback, CallbackQueue

log = logging.getLogger(__name__)

MAX_URL = 2048
HOST = re.compile(r"[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?|[0-9a-f:.]{2,45}")  # a DNS name or an IP
MAX_ATTEMPTS = 12  # 1 s doubling to an hour: about two hours of tries in all
FIRST_RETRY_S = 1.0
LONGEST_RETRY_S = 3600.0
TIMEOUT_S = 10.0  # for one delivery
POLL_S = 1.0  # how often a node looks for callbacks due
SIGNATURE_HEADER = "X-ArtDAG-Signature"
NODE_HEADER = "X-ArtDAG-Node"


async def checked_callback(url: object, allowed_hosts: tuple[str, ...]) -> str:
    """The callback URL if it may be used; InvalidInput (400) saying why not."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL:
        raise InvalidInput(f"callback is an http(s) URL of at most {MAX_URL} characters", field="callback")
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - raises ValueError for a port that is no number
    except ValueError:
        raise InvalidInput("callback is an http:// or https:// URL with a host", field="callback") from None
    if parts.scheme not in ("http", "https") or not HOST.fullmatch(host):
        raise InvalidInput(
            "callback is an http:// or https:// URL whose host is a DNS name or an IP address",
            field="callback",
        )
    if allowed_hosts:
        if host not in allowed_hosts:
            raise InvalidInput(
                f"callback host {host!r} is not one this node may call (ARTDAG_CALLBACK_HOSTS)",
                field="callback",
            )
        return url
    for address in await _addresses(host):
        if not address.is_global:
            raise InvalidInput(
                f"callback host {host!r} is an internal address ({address}); only public hosts, or those "
                "in ARTDAG_CALLBACK_HOSTS, may be called",
                field="callback",
            )
    return url


async def _addresses(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise InvalidInput(f"callback host {host!r} does not resolve", field="callback") from None
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in found]


def signed_headers(identity: NodeIdentity, body: bytes) -> dict[str, str]:
    """The headers that let a receiver check the body came from this node, unchanged."""
    return {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: base64.b64encode(identity.sign(body)).decode(),
        NODE_HEADER: identity.node_id,
    }


class Notifier:
    """Delivers the callbacks due, from this node, until closed."""

    def __init__(
        self,
        queue: CallbackQueue,
        identity: NodeIdentity,
        session: aiohttp.ClientSession,
        allowed_hosts: tuple[str, ...],
        poll_s: float = POLL_S,
    ) -> None:
        self._queue = queue
        self._identity = identity
        self._session = session
        self._allowed = allowed_hosts
        self._poll_s = poll_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="callbacks")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def queue(self, run_id: str, url: str, record: dict[str, Any]) -> None:
        """Queue the callback of a run that reached its final status, due now."""
        await self._queue.add(Callback(run_id, url, json.dumps(record, sort_keys=True)), time.time())

    async def deliver_due(self) -> int:
        """Deliver what is due now; how many were delivered."""
        delivered = 0
        for callback in await self._queue.take_due(time.time()):
            if await self._deliver(callback):
                delivered += 1
            elif callback.attempt + 1 < MAX_ATTEMPTS:
                delay = min(LONGEST_RETRY_S, FIRST_RETRY_S * 2**callback.attempt)
                again = Callback(callback.run_id, callback.url, callback.body, callback.attempt + 1)
                await self._queue.add(again, time.time() + delay)
            else:
                log.warning(
                    "callback of run %s to %s given up after %d tries",
                    callback.run_id,
                    callback.url,
                    MAX_ATTEMPTS,
                )
        return delivered

    async def _deliver(self, callback: Callback) -> bool:
        body = callback.body.encode()
        try:
            await checked_callback(callback.url, self._allowed)  # again: a name may point elsewhere now
            async with self._session.post(
                callback.url,
                data=body,
                headers=signed_headers(self._identity, body),
                timeout=aiohttp.ClientTimeout(total=TIMEOUT_S),
                allow_redirects=False,
            ) as response:
                ok = 200 <= response.status < 300
                reason = f"answered {response.status}"
        except InvalidInput as exc:
            ok, reason = False, exc.message
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            ok, reason = False, f"not reached ({type(exc).__name__})"
        if ok:
            log.info("callback of run %s delivered to %s", callback.run_id, callback.url)
        else:
            log.warning(
                "callback of run %s to %s %s (try %d)",
                callback.run_id,
                callback.url,
                reason,
                callback.attempt + 1,
            )
        return ok

    async def _loop(self) -> None:
        while True:
            try:
                await self.deliver_due()
            except NodeError as exc:  # Redis away: the callbacks wait there
                log.warning("callbacks not delivered now (%s)", exc.message)
            except Exception:  # a bug must not end deliveries for good
                log.exception("callback round failed")
            await asyncio.sleep(self._poll_s)
