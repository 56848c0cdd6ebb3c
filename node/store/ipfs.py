"""An async client for the Kubo RPC API (``/api/v0``), spoken over aiohttp.

Speaks to Kubo (see ``node/kubo.py`` for the versions). Bytes stream both
ways: ``add`` reads an async iterator of chunks, ``cat`` yields chunks, so memory stays bounded
whatever the size. Every call has a deadline: plain calls a total one, streams an idle one (no
byte for ``timeout_s`` ends the call), subscriptions one for connecting. Failures come out as
the store's typed errors, never as raw aiohttp exceptions.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import aiohttp
from aiohttp import payload

from node.errors import NodeError
from node.metrics import Metrics
from node.store.cid import LEAF_MAX_BYTES, normalize_cid
from node.store.errors import ContentNotFound, ContentTooLarge, IpfsError, IpfsTimeout, IpfsUnavailable

log = logging.getLogger(__name__)

# The import settings fix the CID of given bytes; other settings give other CIDs
# (docs/design.md "Identifiers").
IMPORT_PARAMS = {
    "cid-version": "1",
    "raw-leaves": "true",
    "chunker": "size-262144",
    "hash": "sha2-256",
    "cid-base": "base32",
}
CHUNK_SIZE = LEAF_MAX_BYTES
CONNECT_TIMEOUT_S = 5.0
GC_TIMEOUT_S = 600.0  # repo/gc walks every pin and block: minutes on a large repository
_NOT_FOUND_HINTS = ("not found", "no link named", "does not exist", "could not resolve", "not pinned")


@dataclass(frozen=True)
class Added:
    """What ``add`` stored: the root CID (v1 base32) and the daemon's DAG size."""

    cid: str
    dag_size: int


@dataclass(frozen=True)
class PubsubMessage:
    sender: str
    data: bytes
    seqno: str


class IpfsClient:
    """Calls one daemon's RPC API through a shared :class:`aiohttp.ClientSession`."""

    def __init__(
        self,
        api_url: str,
        session: aiohttp.ClientSession,
        timeout_s: float = 30.0,
        *,
        metrics: Metrics | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self._session = session
        self._timeout_s = timeout_s
        self._metrics = metrics or Metrics()  # each call timed, by endpoint (GET /metrics)

    @property
    def timeout_s(self) -> float:
        """The default deadline (total for calls, idle for streams), in seconds."""
        return self._timeout_s

    # --- plumbing ---------------------------------------------------------------------------
    def _deadline(self, kind: str, timeout_s: float | None = None) -> aiohttp.ClientTimeout:
        seconds = timeout_s or self._timeout_s
        if kind == "total":
            return aiohttp.ClientTimeout(total=seconds, sock_connect=CONNECT_TIMEOUT_S)
        if kind == "idle":
            return aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_S, sock_read=seconds)
        return aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_S, sock_read=None)

    @contextlib.asynccontextmanager
    async def _request(
        self,
        command: str,
        params: dict[str, str] | list[tuple[str, str]],
        deadline: aiohttp.ClientTimeout,
        data: Any = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        url = f"{self.api_url}/api/v0/{command}"
        started = time.perf_counter()
        try:
            async with self._session.post(url, params=params, data=data, timeout=deadline) as response:
                # Until the answer began: what follows is the caller reading it (a stream, at its pace).
                self._metrics.ipfs_latency.labels(command).observe(time.perf_counter() - started)
                if response.status >= 400:
                    raise self._failed(command, await _error_for(response, command))
                yield response
        except TimeoutError as exc:
            message = f"IPFS daemon did not answer {command} in time"
            raise self._failed(command, IpfsTimeout(message, command=command)) from exc
        except aiohttp.ClientConnectionError as exc:
            message = f"IPFS daemon is unavailable: {exc}"
            raise self._failed(command, IpfsUnavailable(message, command=command)) from exc

    def _failed(self, command: str, error: NodeError) -> NodeError:
        """``error``, counted (by endpoint and code) in the metrics."""
        self._metrics.ipfs_errors.labels(command, error.code).inc()
        return error

    async def call(self, command: str, *, timeout_s: float | None = None, **params: str) -> Any:
        """POST ``/api/v0/{command}`` and return its decoded JSON answer (last line if NDJSON)."""
        return await self.call_with(command, params, timeout_s)

    async def call_with(self, command: str, params: dict[str, str], timeout_s: float | None = None) -> Any:
        """``call`` with the parameters in a dict (names such as ``allow-offline``)."""
        async with self._request(command, params, self._deadline("total", timeout_s)) as response:
            text = await response.text()
        lines = [line for line in text.splitlines() if line.strip()]
        try:
            return json.loads(lines[-1]) if lines else {}
        except ValueError as exc:
            raise IpfsError(f"IPFS daemon sent a malformed answer to {command}", command=command) from exc

    # --- identity -----------------------------------------------------------------------------
    async def id(self) -> dict[str, Any]:
        """The daemon's peer id, public key, addresses and agent version."""
        return dict(await self.call("id"))

    async def version(self) -> dict[str, Any]:
        return dict(await self.call("version"))

    # --- bytes ----------------------------------------------------------------------------------
    async def add(self, chunks: AsyncIterable[bytes], *, pin: bool = False, only_hash: bool = False) -> Added:
        """Stream bytes into IPFS with the fixed import settings; unpinned unless ``pin``.
        ``only_hash``: only the CID they would have; nothing is written to the repository."""
        writer = aiohttp.MultipartWriter("form-data")
        part = writer.append_payload(
            payload.AsyncIterablePayload(chunks, content_type="application/octet-stream")
        )
        part.set_content_disposition("form-data", name="file", filename="data")
        deadline = self._deadline("idle")
        return (await self._add(writer, pin=pin, deadline=deadline, only_hash=only_hash))[-1]

    async def add_many(self, blobs: list[bytes], *, pin: bool = False) -> list[Added]:
        """Add several small items (signed records) in one call; their CIDs, in order."""
        writer = aiohttp.MultipartWriter("form-data")
        for index, blob in enumerate(blobs):
            part = writer.append(blob, {"Content-Type": "application/octet-stream"})
            part.set_content_disposition("form-data", name="file", filename=f"item{index}")
        result = await self._add(writer, pin=pin, deadline=self._deadline("total"))
        if len(result) != len(blobs):
            raise IpfsError(f"IPFS add answered {len(result)} items for {len(blobs)}", command="add")
        return result

    async def _add(
        self,
        writer: aiohttp.MultipartWriter,
        *,
        pin: bool,
        deadline: aiohttp.ClientTimeout,
        only_hash: bool = False,
    ) -> list[Added]:
        """Post ``add`` with the fixed import settings; one entry per line of the answer."""
        params = {**IMPORT_PARAMS, "pin": str(pin).lower(), "progress": "false"}
        if only_hash:
            params["only-hash"] = "true"
        async with self._request("add", params, deadline, data=writer) as response:
            text = await response.text()
        try:
            lines = [json.loads(line) for line in text.splitlines() if line.strip()]
            if not lines:
                raise ValueError("no entry")  # as malformed as a bad one
            return [Added(normalize_cid(item["Hash"]), int(item.get("Size", 0))) for item in lines]
        except (ValueError, KeyError) as exc:
            raise IpfsError(f"IPFS add gave a malformed answer: {text[:200]!r}", command="add") from exc

    @contextlib.asynccontextmanager
    async def cat(
        self,
        cid: str,
        offset: int = 0,
        length: int | None = None,
        *,
        offline: bool = True,
        timeout_s: float | None = None,
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        """Open ``cid`` (from ``offset``, at most ``length`` bytes); yields a chunk iterator.

        ``offline`` (the default): the daemon answers only from its own blocks and never asks
        another daemon. A caller that knows the cluster or a trusted peer holds ``cid`` (it is
        in an index) passes ``offline=False``: the daemon then fetches what it lacks from the
        daemons it is peered with, within the idle deadline.
        Errors that the daemon reports before the first byte (unavailable, not found) are raised
        on entry, so an HTTP handler can still answer with the right status; one it reports
        after (a block missing halfway) ends the iteration with an error, never a short read."""
        params = {"arg": cid, "offset": str(offset)}
        if offline:
            params["offline"] = "true"
        if length is not None:
            params["length"] = str(length)
        async with self._request("cat", params, self._deadline("idle", timeout_s)) as response:
            yield _chunks(response, _announced_length(response))

    async def cat_all(
        self, cid: str, max_bytes: int, *, offline: bool = True, timeout_s: float | None = None
    ) -> bytes:
        """The whole of a small item (a record, a recipe); ContentTooLarge past ``max_bytes``."""
        received = bytearray()
        async with self.cat(cid, offline=offline, timeout_s=timeout_s) as chunks:
            async for chunk in chunks:
                received += chunk
                if len(received) > max_bytes:
                    raise ContentTooLarge(f"{cid} is larger than {max_bytes} bytes", cid=cid, limit=max_bytes)
        return bytes(received)

    # --- the repository ---------------------------------------------------------------------------
    async def repo_size(self) -> int:
        """Bytes the daemon's repository holds (blocks and datastore), as Kubo counts them."""
        answer = await self.call_with("repo/stat", {"size-only": "true"})
        return int(answer.get("RepoSize", 0))

    async def collect_garbage(self, timeout_s: float = GC_TIMEOUT_S) -> None:
        """Remove every block no pin keeps (``repo/gc``); the daemon runs with ``--enable-gc=false``,
        so only this removes anything."""
        await self.call_with("repo/gc", {"silent": "true"}, timeout_s=timeout_s)

    # --- pins -----------------------------------------------------------------------------------
    async def pin_add(self, cid: str) -> None:
        await self.call("pin/add", arg=cid, recursive="true", offline="true")

    async def pin_rm(self, cid: str) -> None:
        """Unpin ``cid``; unpinning what is not pinned is not an error."""
        with contextlib.suppress(ContentNotFound):
            await self.call("pin/rm", arg=cid, recursive="true")

    async def pin_ls(self, cid: str | None = None) -> set[str]:
        """Recursively pinned CIDs (v1 base32); with ``cid``, that CID if it is pinned."""
        try:
            if cid is None:
                answer = await self.call("pin/ls", type="recursive")
            else:
                answer = await self.call("pin/ls", type="recursive", arg=cid)
        except ContentNotFound:
            return set()
        return {normalize_cid(key) for key in answer.get("Keys", {})}

    # --- keys and names -------------------------------------------------------------------------
    async def key_gen(self, name: str) -> str:
        """Create an Ed25519 key named ``name``; returns its IPNS name."""
        return str((await self.call("key/gen", arg=name, type="ed25519"))["Id"])

    async def key_ls(self) -> dict[str, str]:
        """Key name -> IPNS name, for every key the daemon holds."""
        answer = await self.call("key/ls")
        return {str(key["Name"]): str(key["Id"]) for key in answer.get("Keys", [])}

    async def name_publish(self, cid: str, key: str, lifetime: str = "48h") -> str:
        """Point ``key``'s IPNS name at ``cid`` without resolving it on the network.

        ``allow-offline``: a daemon with no peer yet (the first node of a cluster) stores the
        record and answers at once; peers get it over pubsub when they subscribe."""
        params = {"arg": f"/ipfs/{cid}", "key": key, "resolve": "false", "lifetime": lifetime}
        answer = await self.call_with("name/publish", {**params, "allow-offline": "true"})
        if not answer.get("Name"):
            raise IpfsError(f"IPFS name publish gave no name for key {key!r}", command="name/publish")
        return str(answer["Name"])

    async def holds_ipns_record(self, name: str) -> bool:
        """Whether this daemon holds a record for the IPNS name (it does for every name it
        published with one of its keys); answered at once, never searched for elsewhere."""
        try:
            await self.call("routing/get", arg=f"/ipns/{name}")
        except ContentNotFound:  # "routing: not found"
            return False
        return True

    async def name_resolve(self, name: str, timeout_s: float | None = None) -> str:
        """The CID an IPNS name points at; ContentNotFound when no record is found in time.

        Kubo waits for up to 16 records for a minute by default: here it takes the first one
        and gives up a second before the node's own deadline, so "no record" comes back as an
        answer (ContentNotFound) rather than as a timeout."""
        seconds = timeout_s or self._timeout_s
        wait = f"{max(seconds - 1.0, seconds / 2):.1f}s"
        params = {"arg": name, "recursive": "true", "dht-record-count": "1", "dht-timeout": wait}
        answer = await self.call_with("name/resolve", params, seconds)
        path = str(answer.get("Path", ""))
        if not path.startswith("/ipfs/"):
            message = f"IPNS name {name} resolves to {path!r}, not an /ipfs/ path"
            raise IpfsError(message, command="name/resolve")
        return normalize_cid(path.removeprefix("/ipfs/").split("/")[0])

    # --- swarm ------------------------------------------------------------------------------------
    async def peering_add(self, addresses: tuple[str, ...]) -> None:
        """Keep the peer these multiaddrs (each ending ``/p2p/ID``) name connected: the daemon
        dials it now and again whenever the connection drops."""
        params = [("arg", address) for address in addresses]
        async with self._request("swarm/peering/add", params, self._deadline("total")) as response:
            await response.read()

    async def peering_rm(self, peer_id: str) -> None:
        """Stop keeping ``peer_id`` connected (an open connection may stay until idle)."""
        await self.call("swarm/peering/rm", arg=peer_id)

    # --- pubsub -----------------------------------------------------------------------------------
    async def pubsub_pub(self, topic: str, data: bytes) -> None:
        writer = aiohttp.MultipartWriter("form-data")
        part = writer.append(data, {"Content-Type": "application/octet-stream"})
        part.set_content_disposition("form-data", name="file", filename="data")
        params = {"arg": _multibase(topic.encode())}
        async with self._request("pubsub/pub", params, self._deadline("total"), data=writer):
            pass

    async def pubsub_sub(self, topic: str) -> AsyncGenerator[PubsubMessage, None]:
        """Messages on ``topic`` as they arrive, until the caller stops iterating.

        Subscriptions are long-lived, so only connecting has a deadline; close the iterator
        (``contextlib.aclosing``) or cancel its task to end it."""
        params = {"arg": _multibase(topic.encode())}
        async with self._request("pubsub/sub", params, self._deadline("stream")) as response:
            async for line in _lines(response):
                message = _pubsub_message(line)
                if message is not None:
                    yield message


def _announced_length(response: aiohttp.ClientResponse) -> int | None:
    """The byte count Kubo announces for a ``cat`` (``X-Content-Length``), if it does."""
    value = response.headers.get("X-Content-Length", "")
    return int(value) if value.isdigit() else None


async def file_chunks(handle: BinaryIO) -> AsyncIterator[bytes]:
    """An open binary file's bytes in chunks of CHUNK_SIZE, each read in a thread."""
    while chunk := await asyncio.to_thread(handle.read, CHUNK_SIZE):
        yield chunk


async def _chunks(response: aiohttp.ClientResponse, expected: int | None) -> AsyncIterator[bytes]:
    """The body's chunks; an error if it ends before the announced length.

    Kubo reports an error that happens after the body began (a block it cannot get) only in
    the ``X-Stream-Error`` trailer and then ends the body cleanly. aiohttp does not expose
    trailers, so the announced length is what tells a short read from a complete one."""
    received = 0
    try:
        async for chunk in response.content.iter_any():  # whatever arrived: no re-chunking copies
            received += len(chunk)
            yield chunk
    except TimeoutError as exc:
        raise IpfsTimeout("IPFS daemon stalled while streaming", command="cat") from exc
    except aiohttp.ClientError as exc:
        raise IpfsUnavailable(f"IPFS daemon broke off the stream: {exc}", command="cat") from exc
    if expected is not None and received < expected:
        raise IpfsError(
            f"IPFS cat ended after {received} of {expected} bytes (the daemon failed mid-stream)",
            command="cat",
        )


async def _lines(response: aiohttp.ClientResponse) -> AsyncIterator[str]:
    try:
        async for raw in response.content:
            if raw.strip():
                yield raw.decode()
    except aiohttp.ClientError as exc:
        raise IpfsUnavailable(f"IPFS daemon broke off the subscription: {exc}", command="pubsub/sub") from exc


def _pubsub_message(line: str) -> PubsubMessage | None:
    """A message from one line of the subscription, None for keep-alives; IpfsError if garbled."""
    try:
        message = json.loads(line)
        if not isinstance(message, dict) or "data" not in message:
            return None
        return PubsubMessage(
            sender=str(message.get("from", "")),
            data=_unmultibase(str(message["data"])),
            seqno=str(message.get("seqno", "")),
        )
    except (ValueError, binascii.Error) as exc:
        raise IpfsError(
            f"IPFS pubsub sent a malformed message: {line[:100]!r}", command="pubsub/sub"
        ) from exc


def _multibase(data: bytes) -> str:
    """Multibase base64url ('u' prefix), as the RPC API wants topics and returns data."""
    return "u" + base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unmultibase(text: str) -> bytes:
    if not text.startswith("u"):
        raise IpfsError(f"unexpected multibase prefix in pubsub data: {text[:1]!r}", command="pubsub/sub")
    body = text[1:]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


_OUTAGE_STATUSES = frozenset({502, 503, 504})
# What Kubo answers while it shuts down or cannot keep up: an outage, not the request's fault.
_OUTAGE_HINTS = ("context canceled", "context deadline exceeded", "daemon is shutting down")


async def _error_for(response: aiohttp.ClientResponse, command: str) -> NodeError:
    try:
        body = await response.json(content_type=None)
        message = str(body.get("Message", "")) if isinstance(body, dict) else ""
    except (TimeoutError, ValueError, aiohttp.ClientError):
        message = ""
    text = f"IPFS {command} failed ({response.status}): {message or response.reason}"
    if any(hint in message.lower() for hint in _NOT_FOUND_HINTS):
        return ContentNotFound(text, command=command)
    if response.status in _OUTAGE_STATUSES or any(hint in message.lower() for hint in _OUTAGE_HINTS):
        return IpfsUnavailable(text, command=command)  # a daemon stopping or overloaded: not for good
    return IpfsError(text, command=command)
