"""Keeping this node's IPFS daemon peered with the daemons that hold what it indexes.

Zero configuration: nodes that share a Redis record their daemon (its peer id and swarm
addresses) in one registry, a hash of peer id -> ``{"addresses", "node", "seen"}``, and each
node keeps every other daemon of the registry in its own daemon's peering set
(``swarm/peering/add``): Kubo then keeps them connected and reconnects them after a restart.
Trusted peers in ``ARTDAG_PEERS`` have a Redis of their own; their signed state documents carry
the same address, and ``PeerSync`` peers with it through :meth:`DaemonPeering.peer_with`.

With the swarm private (the default), these daemons are the only ones a daemon ever talks to,
so content the cluster indexes can be fetched by CID from whichever daemon holds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from node.errors import NodeError
from node.store.ipfs import IpfsClient
from node.sync.connection import redis_errors
from node.sync.keys import Keys
from node.timestamps import utc_text

log = logging.getLogger(__name__)

REFRESH_S = 15.0  # how often a node re-registers its daemon and re-reads the registry
STALE_S = 10 * 60.0  # a daemon (or node) not re-registered for this long has gone: dropped
SILENT_AFTER_S = 3 * REFRESH_S  # a node not heard from for this long is marked silent
NODE_FIELD = "node:"  # the registry's fields for nodes (their status), beside the daemons' peer ids
MAX_ADDRESSES = 16


@dataclass(frozen=True)
class DaemonAddress:
    """Where an IPFS daemon is reached: its peer id and its swarm multiaddrs (``.../p2p/ID``)."""

    peer_id: str
    addresses: tuple[str, ...]


async def own_address(ipfs: IpfsClient) -> DaemonAddress:
    """The address of the daemon ``ipfs`` speaks to, as it announces itself."""
    answer = await ipfs.id()
    peer_id = str(answer.get("ID", ""))
    return DaemonAddress(peer_id, dialable(peer_id, answer.get("Addresses") or []))


def dialable(peer_id: str, addresses: Any) -> tuple[str, ...]:
    """The multiaddrs of ``peer_id`` that another daemon can dial directly (no relays),
    each ending in ``/p2p/{peer_id}``; anything malformed is left out."""
    if not isinstance(addresses, list):
        return ()
    suffix = f"/p2p/{peer_id}"
    found = [
        address if address.endswith(suffix) else address + suffix
        for address in addresses
        if isinstance(address, str) and address.startswith("/") and "/p2p-circuit" not in address
        and ("/p2p/" not in address or address.endswith(suffix))
    ]  # fmt: skip
    return tuple(dict.fromkeys(found))[:MAX_ADDRESSES]


class DaemonPeering:
    """Registers this node's daemon in the shared registry and peers it with the others."""

    def __init__(
        self,
        *,
        ipfs: IpfsClient,
        client: aioredis.Redis,
        keys: Keys,
        node_id: str,
        refresh_s: float = REFRESH_S,
        refilling: bool = False,
    ) -> None:
        self._ipfs = ipfs
        self._redis = client
        self._keys = keys
        self._node_id = node_id
        self._refresh_s = refresh_s
        self.refilling = refilling  # said in the registry: others keep their entries meanwhile
        self._own: DaemonAddress | None = None
        self._peered: dict[str, tuple[str, ...]] = {}  # peer id -> the addresses given to Kubo
        self._from_registry: set[str] = set()  # peered because the registry named them
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._round_now = asyncio.Event()  # ends the wait between rounds early
        self._lock = asyncio.Lock()
        # What this node says of itself in the registry (workers, steps running), for the
        # cluster view (GET /cluster): given once the executor is open (``describe_with``).
        self.describe: Callable[[], dict[str, Any]] | None = None

    def describe_with(self, describe: Callable[[], dict[str, Any]]) -> None:
        """Say this in the registry from now on, starting with a round at once (the first round,
        at start, came before the executor could say anything)."""
        self.describe = describe
        self._round_now.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._keep_peered(), name="daemon-peering")

    async def close(self) -> None:
        """Stop refreshing. The loop is asked to end, then cancelled if a round is under way:
        a Redis call waiting for a connection can swallow a cancellation, and a loop that
        swallowed it would sleep and refresh on for ever."""
        self._stopping.set()
        self._round_now.set()  # out of its wait at once
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def refresh(self) -> Registry:
        """Register this daemon, then peer with every other one in the registry and let go of
        those that left it; the registry as read."""
        own = await own_address(self._ipfs)
        self._own = own
        with redis_errors():
            now = _seconds(await self._redis.time())  # one clock for every machine: Redis's
            entry = {"addresses": list(own.addresses), "node": self._node_id, "seen": now}
            status = {
                **(self.describe() if self.describe else {}),
                "node": self._node_id,
                "daemon": own.peer_id,
            }
            await self._redis.hset(
                self._keys.daemons,
                mapping={
                    own.peer_id: json.dumps({**entry, "refilling": self.refilling}),
                    NODE_FIELD + self._node_id: json.dumps({**status, "seen": now}),
                },
            )
            raw = await self._redis.hgetall(self._keys.daemons)
        registry, stale = _read_registry(raw, own.peer_id, now, self._node_id)
        if stale:
            with redis_errors():
                await self._redis.hdel(self._keys.daemons, *stale)
        await self._drop_what_kubo_forgot()
        for daemon in registry.others:
            try:
                await self.peer_with(daemon)
            except NodeError as exc:  # one bad address must not keep the others unpeered
                log.warning("IPFS daemon %s not peered (%s)", daemon.peer_id, exc.message)
        named = {daemon.peer_id for daemon in registry.others}
        self._from_registry |= named
        await self._forget(self._from_registry - named)
        return registry

    async def cluster(self) -> list[dict[str, Any]]:
        """Every node registered here, as it last described itself, with when it was last seen
        (``seen_s`` ago) and whether it is ``live`` or ``silent`` (not heard from for
        SILENT_AFTER_S); a node gone for STALE_S is dropped from the registry."""
        with redis_errors():
            now = _seconds(await self._redis.time())
            raw = await self._redis.hgetall(self._keys.daemons)
        nodes, gone = [], []
        for field, value in raw.items():
            if not str(field).startswith(NODE_FIELD):
                continue
            try:
                status = dict(json.loads(value))
                age = max(0.0, now - float(status["seen"]))
            except (ValueError, TypeError, KeyError):
                gone.append(str(field))
                continue
            if age > STALE_S:
                gone.append(str(field))
                continue
            nodes.append({**status, "seen": utc_text(float(status["seen"])), "seen_s": round(age, 1),
                          "state": "live" if age <= SILENT_AFTER_S else "silent"})  # fmt: skip
        if gone:
            with redis_errors():
                await self._redis.hdel(self._keys.daemons, *gone)
        return sorted(nodes, key=lambda node: str(node.get("node", "")))

    async def peer_with(self, daemon: DaemonAddress) -> bool:
        """Keep ``daemon`` in this daemon's peering set (a no-op for this daemon itself, or when
        nothing changed since the last time); whether Kubo was asked."""
        addresses = dialable(daemon.peer_id, list(daemon.addresses))
        if not daemon.peer_id or not addresses:
            return False
        async with self._lock:
            if self._own is None:
                self._own = await own_address(self._ipfs)
            if daemon.peer_id == self._own.peer_id or self._peered.get(daemon.peer_id) == addresses:
                return False
            await self._ipfs.peering_add(addresses)
            self._peered[daemon.peer_id] = addresses
        log.info("peered with IPFS daemon %s at %s", daemon.peer_id, ", ".join(addresses))
        return True

    async def connected(self) -> set[str]:
        """The peer ids this daemon has a connection to now."""
        answer = await self._ipfs.call("swarm/peers")
        return {str(peer.get("Peer", "")) for peer in answer.get("Peers") or []}

    async def _drop_what_kubo_forgot(self) -> None:
        """Kubo keeps its peering set in memory: a daemon restarted under the node (an external
        one, or after a crash) has forgotten it, so what it lacks is added again this round."""
        answer = await self._ipfs.call("swarm/peering/ls")
        kept = {str(peer.get("ID", "")) for peer in answer.get("Peers") or []}
        async with self._lock:
            for peer_id in set(self._peered) - kept:
                del self._peered[peer_id]

    async def _forget(self, gone: set[str]) -> None:
        """Stop keeping daemons that left the registry connected (Kubo would redial forever)."""
        async with self._lock:
            for peer_id in gone:
                if peer_id in self._peered:
                    await self._ipfs.peering_rm(peer_id)
                    del self._peered[peer_id]
                    log.info("no longer peered with IPFS daemon %s: it left the registry", peer_id)
                self._from_registry.discard(peer_id)

    async def _keep_peered(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.refresh()
            except NodeError as exc:  # the daemon or Redis is down: try again at the next round
                log.warning("daemon peering not refreshed (%s)", exc.message)
            except Exception:  # a bug must not end peering for good
                log.exception("daemon peering round failed")
            with contextlib.suppress(TimeoutError):  # woken early to stop, or for a round now
                await asyncio.wait_for(self._round_now.wait(), self._refresh_s)
            self._round_now.clear()


@dataclass(frozen=True)
class Registry:
    """The other daemons of the cluster, as one read of the registry found them."""

    others: tuple[DaemonAddress, ...]
    refilling: frozenset[str]  # peer ids of daemons whose node is refilling a new repository


def _read_registry(
    raw: dict[Any, Any], own_peer_id: str, now: float, node_id: str
) -> tuple[Registry, list[str]]:
    """(the live daemons other than ``own_peer_id``, the entries to drop: stale, malformed, or
    this node's previous daemon, which it left for ``own_peer_id``)."""
    others: list[DaemonAddress] = []
    refilling: set[str] = set()
    stale: list[str] = []
    for peer_id, value in raw.items():
        if str(peer_id).startswith(NODE_FIELD):
            continue  # a node's status, not a daemon (GET /cluster reads those)
        entry = _Entry.parse(str(peer_id), value)
        if entry is None or entry.seen < now - STALE_S or (entry.node == node_id and peer_id != own_peer_id):
            stale.append(str(peer_id))
        elif peer_id != own_peer_id:
            others.append(entry.address)
            if entry.refilling:
                refilling.add(entry.address.peer_id)
    return Registry(tuple(others), frozenset(refilling)), stale


def _seconds(redis_time: Any) -> float:
    seconds, microseconds = redis_time
    return float(seconds) + float(microseconds) / 1e6


@dataclass(frozen=True)
class _Entry:
    """One daemon as the registry holds it."""

    address: DaemonAddress
    seen: float  # Redis's clock when its node last registered it
    refilling: bool
    node: str  # the node that last registered it

    @classmethod
    def parse(cls, peer_id: str, raw: Any) -> _Entry | None:
        try:
            value = json.loads(raw)
            seen = float(value["seen"])
        except (ValueError, TypeError, KeyError):
            return None
        address = DaemonAddress(peer_id, dialable(peer_id, value.get("addresses")))
        return cls(address, seen, bool(value.get("refilling")), str(value.get("node", "")))
