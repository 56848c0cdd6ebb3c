"""Trusted peers: their published states followed, their step entries merged into Redis.

A peer is a node this one trusts (``ARTDAG_PEERS``: its node id, which is its public key, and
where its state is: URLs, IPNS names). Its state arrives three ways: announced on the pubsub
topic (at once), from ``GET {url}/state`` and from its IPNS name (polled every ``poll_s``).
Each is verified against the peer's key; the one with the highest sequence wins, and when it
is higher than the last one merged, the peer's step index is read from IPFS and its entries
kept under ``peerstep:`` so a run here fetches those outputs by CID instead of computing them
(``node.executor.adoption``). States signed by anyone else are ignored; a badly signed one is
recorded as the peer's error. An entry is used only if its receipt is signed by a node this
one trusts (``node.executor.adoption``), so trust is never transitive, even when a peer's index
holds steps it fetched from its own peers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from node.errors import NodeError
from node.federation.peering import DaemonAddress, DaemonPeering
from node.federation.snapshot import BATCH, INDEX_MAX_BYTES, read_index, read_steps
from node.federation.state_document import STATE_MAX_BYTES, STATE_TOPIC, NodeState, read_state
from node.metrics import Metrics
from node.records import RecordError
from node.store.ipfs import IpfsClient
from node.sync.connection import redis_errors
from node.sync.index import StepEntry, step_fields
from node.sync.keys import Keys
from node.timestamps import utc_now

log = logging.getLogger(__name__)

FETCH_TIMEOUT_S = 10.0
RECONNECT_S = 2.0
RECONNECT_MAX_S = 60.0
STOP_POLL_S = 0.5


@dataclass(frozen=True)
class Peer:
    """A trusted node: its id (its public key) and where its state can be read."""

    node_id: str
    urls: tuple[str, ...] = ()
    ipns_names: tuple[str, ...] = ()


def parse_peers(items: tuple[str, ...]) -> list[Peer]:
    """Peers from the ``NODE_ID@LOCATION`` items of the settings (validated there), one per
    node id with all its locations."""
    locations: dict[str, list[str]] = {}
    for item in items:
        node_id, _, location = item.partition("@")
        locations.setdefault(node_id, []).append(location)
    return [
        Peer(
            node_id,
            tuple(where for where in found if where.startswith(("http://", "https://"))),
            tuple(where for where in found if not where.startswith(("http://", "https://"))),
        )
        for node_id, found in locations.items()
    ]


class PeerSteps:
    """``peerstep:{cache_id}`` hashes: steps trusted peers computed, and who did."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self._redis = client
        self._keys = keys

    async def get(self, cache_id: str) -> tuple[StepEntry, str] | None:
        """The entry and the peer whose state it came from."""
        with redis_errors():
            fields = await self._redis.hgetall(self._keys.peer_step(cache_id))
        return (StepEntry.from_hash(cache_id, fields), str(fields["peer"])) if fields else None

    async def put_many(self, entries: list[StepEntry], peer: str) -> None:
        for start in range(0, len(entries), BATCH):
            with redis_errors():
                async with self._redis.pipeline(transaction=False) as pipe:
                    for entry in entries[start : start + BATCH]:
                        fields: dict[Any, Any] = {**step_fields(entry), "peer": peer}
                        pipe.hset(self._keys.peer_step(entry.cache_id), mapping=fields)
                    await pipe.execute()

    async def forget(self, cache_id: str) -> None:
        with redis_errors():
            await self._redis.delete(self._keys.peer_step(cache_id))


class PeerSync:
    """Follows the trusted peers' states and merges their step entries."""

    def __init__(
        self,
        *,
        peers: list[Peer],
        ipfs: IpfsClient,
        session: aiohttp.ClientSession,
        client: aioredis.Redis,
        keys: Keys,
        poll_s: float,
        peering: DaemonPeering | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.peers = {peer.node_id: peer for peer in peers}
        self._metrics = metrics or Metrics()  # peer states merged (GET /metrics)
        self._peering = peering
        self._ipfs = ipfs
        self._session = session
        self._redis = client
        self._keys = keys
        self._poll_s = poll_s
        self.steps = PeerSteps(client, keys)
        self._locks = {node_id: asyncio.Lock() for node_id in self.peers}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()

    def start(self) -> None:
        if self.peers:
            self._tasks = [
                asyncio.create_task(self._listen(), name="peer-states-pubsub"),
                asyncio.create_task(self._poll(), name="peer-states-poll"),
            ]

    async def close(self) -> None:
        """Stop following peers. Cancelled until done: a Redis call may swallow one
        cancellation, and a subscription would then wait for its next message."""
        self._stopping.set()
        while pending := [task for task in self._tasks if not task.done()]:
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=STOP_POLL_S)
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def offer(self, peer: Peer, data: bytes, source: str) -> bool:
        """Take a state of ``peer`` that came from ``source``: verified, and merged if newer
        than the last merged one; whether it was merged. Problems are recorded, not raised
        (except Redis being down)."""
        async with self._locks[peer.node_id]:
            try:
                state = read_state(data, {peer.node_id})
            except RecordError as exc:
                # Anyone can put bytes on the topic naming a trusted node: quietly, there.
                loud = source != "pubsub"
                await self._record_error(peer, f"state from {source} rejected: {exc.message}", loud=loud)
                return False
            with redis_errors():
                merged = await self._redis.hgetall(self._keys.peer(peer.node_id))
            await self._peer_with(state)  # even an old state: this node may have restarted
            if state.sequence <= int(merged.get("sequence") or 0):
                return False
            try:
                count = await self._merge(state, merged)
            except NodeError as exc:
                message = f"state {state.sequence} from {source} not merged: {exc.message}"
                await self._record_error(peer, message)
                return False
            await self._record_sync(state, source, count)
            self._metrics.peer_merges.inc()
            log.info("peer %s: state %d from %s, %d steps", peer.node_id, state.sequence, source, count)
            return True

    async def _peer_with(self, state: NodeState) -> None:
        """Keep the peer's daemon peered with this node's, so its CIDs can be fetched; best
        effort (a daemon that cannot be reached now is tried again with the next state)."""
        if self._peering is None:
            return
        try:
            await self._peering.peer_with(DaemonAddress(state.peer_id, state.swarm))
        except NodeError as exc:
            log.warning("peer %s: its IPFS daemon not peered (%s)", state.node_id, exc.message)

    async def _merge(self, state: NodeState, merged: dict[Any, Any]) -> int:
        """Keep the peer's computed steps; the count. A step index already merged (same CID)
        is not read again."""
        if merged.get("steps_cid") == state.indexes["steps"]:
            return int(merged.get("steps") or 0)
        data = await self._ipfs.cat_all(state.indexes["steps"], INDEX_MAX_BYTES, offline=False)
        entries = await asyncio.to_thread(lambda: read_steps(read_index("steps", data)))
        # Run finishes have no receipt; steps computed by a node not trusted here are no use
        # (an entry's ``node`` only saves the fetch: its receipt's signature is what is checked).
        computed = [entry for entry in entries if entry.receipt_cid and entry.node in self.peers]
        await self.steps.put_many(computed, state.node_id)
        return len(computed)

    async def _record_sync(self, state: NodeState, source: str, count: int) -> None:
        fields: dict[Any, Any] = {
            "sequence": str(state.sequence),
            "published": state.published,
            "source": source,
            "synced": utc_now(),
            "steps": str(count),
            "steps_cid": state.indexes["steps"],
            "url": state.url,
            "ipns_name": state.ipns_name,
        }
        with redis_errors():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(self._keys.peer(state.node_id), mapping=fields)
                pipe.hdel(self._keys.peer(state.node_id), "error", "error_at")  # what went wrong before
                await pipe.execute()

    async def _record_error(self, peer: Peer, message: str, *, loud: bool = True) -> None:
        log.log(logging.WARNING if loud else logging.DEBUG, "peer %s: %s", peer.node_id, message)
        with contextlib.suppress(NodeError), redis_errors():
            await self._redis.hset(
                self._keys.peer(peer.node_id), mapping={"error": message, "error_at": utc_now()}
            )

    async def status(self) -> list[dict[str, Any]]:
        """Each peer: where it is, the sequence merged, when, from where, and its last error."""
        with redis_errors():
            async with self._redis.pipeline(transaction=False) as pipe:
                for node_id in self.peers:
                    pipe.hgetall(self._keys.peer(node_id))
                rows = await pipe.execute()
        return [_peer_status(peer, row) for peer, row in zip(self.peers.values(), rows, strict=True)]

    # --- sources ----------------------------------------------------------------------------
    async def _listen(self) -> None:
        """States announced on the pubsub topic, as they come; reconnects after a failure."""
        delay_s = RECONNECT_S
        while not self._stopping.is_set():
            try:
                async with contextlib.aclosing(self._ipfs.pubsub_sub(STATE_TOPIC)) as messages:
                    async for message in messages:
                        delay_s = RECONNECT_S  # it works: a later failure is retried soon
                        peer = self.peers.get(_signer(message.data))
                        if peer is None:  # anyone else's announcements are not for us
                            continue
                        try:
                            await self.offer(peer, message.data, "pubsub")
                        except Exception:  # Redis down, a bug: the subscription goes on
                            log.exception("peer %s: state from pubsub not taken", peer.node_id)
            except NodeError as exc:  # pubsub off, or the daemon restarting: the polls go on
                log.warning("peer states: no pubsub subscription (%s); again in %.0f s", exc.message, delay_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay_s)
            delay_s = min(2 * delay_s, RECONNECT_MAX_S)

    async def _poll(self) -> None:
        """Every peer's URLs and IPNS names, at start and every ``poll_s``."""
        while not self._stopping.is_set():
            for peer in self.peers.values():  # one at a time: a few requests every poll_s
                try:
                    await self.poll_peer(peer)
                except Exception:  # Redis down, a bug: the next poll tries again
                    log.exception("peer %s: poll failed", peer.node_id)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._poll_s)

    async def poll_peer(self, peer: Peer) -> None:
        """Read the peer's state from each of its locations now."""
        for url in peer.urls:
            try:
                data = await self._fetch_url(f"{url}/state")
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                await self._record_error(peer, f"GET {url}/state failed: {exc or type(exc).__name__}")
                continue
            if data is not None:
                await self.offer(peer, data, url)
        for name in peer.ipns_names:
            try:
                cid = await self._ipfs.name_resolve(name, timeout_s=FETCH_TIMEOUT_S)
                data = await self._ipfs.cat_all(cid, STATE_MAX_BYTES, offline=False)
            except NodeError as exc:
                await self._record_error(peer, f"IPNS name {name} not resolved: {exc.message}")
                continue
            await self.offer(peer, data, f"/ipns/{name}")

    async def _fetch_url(self, url: str) -> bytes | None:
        timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)
        async with self._session.get(url, timeout=timeout) as response:
            if response.status == 404:  # it has published nothing yet
                return None
            if response.status != 200:
                raise ValueError(f"HTTP {response.status}")
            data = await response.content.read(STATE_MAX_BYTES + 1)
        if len(data) > STATE_MAX_BYTES:
            raise ValueError(f"a state document is at most {STATE_MAX_BYTES} bytes")
        return data


def _signer(data: bytes) -> str:
    try:
        record = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return ""
    return str(record.get("signer", "")) if isinstance(record, dict) else ""


def _peer_status(peer: Peer, row: dict[str, str]) -> dict[str, Any]:
    return {
        "node_id": peer.node_id,
        "urls": list(peer.urls),
        "ipns_names": list(peer.ipns_names),
        "sequence": int(row["sequence"]) if row.get("sequence") else None,
        "published": row.get("published"),
        "synced": row.get("synced"),
        "source": row.get("source"),
        "steps": int(row.get("steps", 0)),
        "error": row.get("error"),
        "error_at": row.get("error_at"),
    }
