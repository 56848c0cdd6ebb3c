"""An async client for the Kubo RPC API (``/api/v0``), spoken over aiohttp.

Every call has a deadline; failures come out as the store's typed errors, never as raw
aiohttp exceptions. Later issues add streaming add/cat, pins, keys, names and pubsub here.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp

from node.store.errors import IpfsError, IpfsTimeout, IpfsUnavailable

log = logging.getLogger(__name__)


class IpfsClient:
    """Calls one daemon's RPC API through a shared :class:`aiohttp.ClientSession`."""

    def __init__(self, api_url: str, session: aiohttp.ClientSession, timeout_s: float = 30.0) -> None:
        self.api_url = api_url.rstrip("/")
        self._session = session
        self._timeout_s = timeout_s

    async def call(self, command: str, *, timeout_s: float | None = None, **params: str) -> Any:
        """POST ``/api/v0/{command}`` and return its decoded JSON answer."""
        url = f"{self.api_url}/api/v0/{command}"
        deadline = aiohttp.ClientTimeout(total=timeout_s or self._timeout_s)
        try:
            async with self._session.post(url, params=params, timeout=deadline) as response:
                if response.status >= 400:
                    raise IpfsError(await _error_message(response, command), command=command)
                return await response.json(content_type=None)
        except TimeoutError as exc:
            raise IpfsTimeout(f"IPFS daemon did not answer {command} in time", command=command) from exc
        except aiohttp.ClientConnectionError as exc:
            raise IpfsUnavailable(f"IPFS daemon is unavailable: {exc}", command=command) from exc
        except (aiohttp.ContentTypeError, ValueError) as exc:
            raise IpfsError(f"IPFS daemon sent a malformed answer to {command}", command=command) from exc

    async def id(self) -> dict[str, Any]:
        """The daemon's peer id, public key, addresses and agent version."""
        return dict(await self.call("id"))

    async def version(self) -> dict[str, Any]:
        return dict(await self.call("version"))


async def _error_message(response: aiohttp.ClientResponse, command: str) -> str:
    try:
        body = await response.json(content_type=None)
        message = str(body.get("Message", "")) if isinstance(body, dict) else ""
    except (TimeoutError, ValueError, aiohttp.ClientError):
        message = ""
    return f"IPFS {command} failed ({response.status}): {message or response.reason}"
