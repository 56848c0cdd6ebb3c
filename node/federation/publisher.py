"""Publishing the node's state (docs/design.md "Published state"), never on a request's path.

A change (a step recorded, a run submitted or finished, content added or deleted: anything
that sends a notice) marks the state dirty; once no change came for ``debounce_s`` (or
``MAX_WAIT_S`` after the first), one background task writes the three index documents and, if
they differ from the last published ones, signs a new state document with a higher sequence,
adds them to IPFS, points the node's IPNS name at it, announces it on the pubsub topic, keeps it
in Redis for ``GET /state`` and in the data directory (0600) for recovery. The previous
documents are unpinned once the new ones are published. An unchanged state is published to
IPNS again every ``REPUBLISH_S``. Before each publication, a Redis that lost this node's state
(emptied since the start) is recovered first; while that fails, nothing is published (a
smaller state would replace the last one).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from node.errors import NodeError, Unavailable
from node.federation.peering import own_address
from node.federation.snapshot import Snapshot
from node.federation.state_document import INDEXES, STATE_TOPIC, NodeState, read_state, sign_state
from node.identity import NodeIdentity
from node.metrics import Metrics
from node.private_files import replace_private_file
from node.store.cid import LEAF_MAX_BYTES, leaf_cid
from node.store.errors import IpfsError
from node.store.ipfs import IpfsClient
from node.sync.connection import redis_errors
from node.sync.keys import Keys
from node.timestamps import utc_now

log = logging.getLogger(__name__)

STATE_FILE = "state.json"  # the last published state document, for recovery without IPNS
REPUBLISH_S = 4 * 3600.0  # IPNS records live 48 h; refresh well before
RETRY_S = 2.0
RETRY_MAX_S = 60.0
MAX_WAIT_S = 30.0  # a node that keeps changing still publishes at least this often
CLOSE_GRACE_S = 10.0
IPNS_LIFETIME = "48h"


@dataclass(frozen=True)
class Names:
    """Where this node's state is found: its IPNS key's name and IPNS name, its peer id."""

    key: str
    ipns_name: str
    peer_id: str
    key_existed: bool  # the daemon held the key before this start: a state may be there


class IpnsNames:
    """The node's IPNS key on its daemon (created on first use), asked for once."""

    def __init__(self, ipfs: IpfsClient, node_id: str) -> None:
        self._ipfs = ipfs
        self.key = f"artdag-{node_id}"  # one key per node: several nodes may share a daemon
        self._names: Names | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> Names:
        """The names (IpfsUnavailable while the daemon cannot be reached)."""
        async with self._lock:
            if self._names is None:
                peer_id = str((await self._ipfs.id())["ID"])
                existing = (await self._ipfs.key_ls()).get(self.key)
                ipns_name = existing or await self._ipfs.key_gen(self.key)
                self._names = Names(self.key, ipns_name, peer_id, key_existed=existing is not None)
            return self._names


class StatePublisher:
    """Publishes this node's state after changes (debounced) and keeps IPNS fresh."""

    def __init__(
        self,
        *,
        identity: NodeIdentity,
        ipfs: IpfsClient,
        client: aioredis.Redis,
        keys: Keys,
        names: IpnsNames,
        url: str,
        data_dir: Path,
        debounce_s: float,
        recovery: Callable[[], Awaitable[str]],
        metrics: Metrics | None = None,
    ) -> None:
        self._identity = identity
        self._metrics = metrics or Metrics()  # states published (GET /metrics)
        self._ipfs = ipfs
        self._redis = client
        self._keys = keys
        self._names = names
        self._url = url
        self._state_file = data_dir / STATE_FILE
        self._debounce_s = debounce_s
        self._snapshot = Snapshot(client, keys, identity.node_id)
        self._changed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._published_at = 0.0
        self._lock = asyncio.Lock()
        self._recovery = recovery

    def changed(self, _topic: str = "") -> None:
        """Mark the state dirty: it is published once changes stop for the debounce delay."""
        self._changed.set()

    async def on_notice(self, topic: str) -> None:
        """A notice listener (``Notices.on``): every notice may change the state."""
        self.changed(topic)

    def start(self) -> None:
        self._changed.set()  # once at start: cheap when nothing changed since the last state
        self._task = asyncio.create_task(self._loop(), name="publish-state")

    async def close(self) -> None:
        """Stop; a publication under way gets ``CLOSE_GRACE_S`` to finish, then is cancelled."""
        self._stopping.set()
        if self._task is not None:
            done, _ = await asyncio.wait({self._task}, timeout=CLOSE_GRACE_S)
            if not done:
                self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def recover(self) -> str:
        """Restore this node's indexes from its last state if Redis lost them (at once, not at
        the next publication), then publish; what recovery found (see ``recover``)."""
        async with self._lock:
            found = await self._recovery()
        self.changed()
        return found

    async def current(self) -> bytes | None:
        """The signed bytes of the state this node last published (None: none yet)."""
        with redis_errors():
            document = await self._redis.hget(self._keys.state(self._identity.node_id), "document")
        return document.encode() if isinstance(document, str) else document

    async def _loop(self) -> None:
        retry_s = RETRY_S
        while not self._stopping.is_set():
            if not await self._wait(self._changed, REPUBLISH_S):
                if not self._stopping.is_set():
                    await self._republish()
                continue
            await self._settle()
            if self._stopping.is_set():
                return
            try:
                await self.publish()
                retry_s = RETRY_S
            except Exception as exc:  # Redis or IPFS down, the last state not recovered yet
                message = exc.message if isinstance(exc, NodeError) else repr(exc)
                log.error("state not published (%s); trying again in %.0f s", message, retry_s)
                await self._wait(self._stopping, retry_s)
                retry_s = min(2 * retry_s, RETRY_MAX_S)
                self._changed.set()

    async def _settle(self) -> None:
        """Wait until no change came for the debounce delay (a run's steps come in bursts), but
        no longer than ``MAX_WAIT_S`` after the first, so a busy node still publishes."""
        first = time.monotonic()
        while not self._stopping.is_set():
            self._changed.clear()
            left_s = MAX_WAIT_S - (time.monotonic() - first)
            if left_s <= 0 or not await self._wait(self._changed, min(self._debounce_s, left_s)):
                return

    async def _wait(self, event: asyncio.Event, timeout_s: float) -> bool:
        """Wait for ``event`` (or stopping) at most ``timeout_s``; whether ``event`` is set."""
        waiters = {asyncio.ensure_future(event.wait()), asyncio.ensure_future(self._stopping.wait())}
        _, pending = await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        for waiter in pending:
            waiter.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return event.is_set()

    async def publish(self) -> NodeState | None:
        """Publish the state now if the indexes changed since the last one; the new state.

        Never publishes less than the last state: if Redis lost this node's state (emptied at
        start or since), the last state is recovered first, and a failure to recover (IPFS
        down, its documents unreachable) is raised: nothing is published until it succeeds."""
        async with self._lock:
            found = await self._recovery()
            documents = await self._snapshot.export()
            with redis_errors():
                last = await self._redis.hgetall(self._keys.state(self._identity.node_id))
            if not last and found == "present":  # emptied between the two: recover first
                raise StateLost("Redis lost this node's state while it was being published")
            daemon = await own_address(self._ipfs)  # asked each time: a restarted daemon moves
            digest = await asyncio.to_thread(_digest, documents, daemon.addresses)
            if last.get("digest") == digest:
                return None
            names = await self._names.get()
            state, state_cid = await self._add(documents, last, names, daemon.addresses)
            await self._remember(state, state_cid, digest)
            await self._announce(state_cid, state.data, names)
            await self._unpin(_pinned(last), keep={state_cid, *state.indexes.values()})
            self._metrics.states_published.inc()
            log.info("published state %d cid=%s", state.sequence, state_cid)
            return state

    async def _add(
        self, documents: dict[str, bytes], last: dict[Any, Any], names: Names, swarm: tuple[str, ...]
    ) -> tuple[NodeState, str]:
        """Add the documents and the new signed state to IPFS, pinned; on a failure, unpin what
        this call added (never what the last state still uses)."""
        added: set[str] = set()
        try:
            indexes = {
                name: leaf_cid(data) for name, data in documents.items() if len(data) <= LEAF_MAX_BYTES
            }
            large = [name for name in INDEXES if name not in indexes]  # several blocks: the daemon says
            if large:
                stored = await self._ipfs.add_many([documents[name] for name in large], pin=True)
                indexes.update({name: item.cid for name, item in zip(large, stored, strict=True)})
                added.update(indexes[name] for name in large)
            sequence = max(int(last.get("sequence", 0)) + 1, time.time_ns() // 1_000_000)
            data = sign_state(
                self._identity,
                sequence=sequence,
                url=self._url,
                ipns_name=names.ipns_name,
                peer_id=names.peer_id,
                indexes=indexes,
                published=utc_now(),
                swarm=swarm,
            )
            small = [name for name in INDEXES if name not in large]
            expected = [indexes[name] for name in small] + [leaf_cid(data)]
            added.update(expected)
            stored = await self._ipfs.add_many([documents[name] for name in small] + [data], pin=True)
            if [item.cid for item in stored] != expected:
                raise IpfsError(
                    "IPFS gave the state documents other CIDs than the node computed", command="add"
                )
            return read_state(data, {self._identity.node_id}), expected[-1]
        except BaseException:
            await asyncio.shield(self._unpin(added, keep=_pinned(last)))
            raise

    async def _remember(self, state: NodeState, state_cid: str, digest: str) -> None:
        """Keep the new state in the data directory (recovery when Redis is lost and IPNS
        cannot be resolved), then in Redis (``GET /state``, the next sequence, and the digest
        that says it is published: written last)."""
        await asyncio.to_thread(replace_private_file, self._state_file, state.data)
        await keep_state(self._redis, self._keys, state, state_cid, digest=digest)

    async def _announce(self, state_cid: str, data: bytes, names: Names) -> None:
        """IPNS, then pubsub: each best effort (peers also poll ``GET /state``)."""
        try:
            await self._ipfs.name_publish(state_cid, names.key, lifetime=IPNS_LIFETIME)
            self._published_at = time.monotonic()
        except NodeError as exc:
            log.warning("state %s not published to IPNS (%s)", state_cid, exc.message)
        try:
            await self._ipfs.pubsub_pub(STATE_TOPIC, data)
        except NodeError as exc:
            log.warning("state %s not announced (%s)", state_cid, exc.message)

    async def _republish(self) -> None:
        """Refresh the IPNS record (and announce again) when nothing changed for a while."""
        if time.monotonic() - self._published_at < REPUBLISH_S:
            return
        try:
            with redis_errors():
                last = await self._redis.hgetall(self._keys.state(self._identity.node_id))
            if last.get("cid"):
                await self._announce(
                    str(last["cid"]), str(last["document"]).encode(), await self._names.get()
                )
        except NodeError as exc:  # tried again at the next interval
            log.warning("state not published to IPNS again (%s)", exc.message)

    async def _unpin(self, cids: set[str], keep: set[str]) -> None:
        for cid in cids - keep:
            try:
                await self._ipfs.pin_rm(cid)
            except NodeError as exc:  # garbage left pinned, nothing lost
                log.warning("state document %s not unpinned (%s)", cid, exc.message)


class StateLost(Unavailable):
    """Redis lost this node's state: it is recovered before anything is published."""

    code = "state_lost"


async def keep_state(
    client: aioredis.Redis, keys: Keys, state: NodeState, state_cid: str, *, digest: str = ""
) -> None:
    """Write a state of this node to Redis (``state:{node_id}``): what ``GET /state`` serves
    and the next sequence follows. ``digest`` (of its documents) says it is published as it is;
    without one (a state recovered), the next publication goes out even if nothing changed."""
    fields: dict[Any, Any] = {
        "sequence": str(state.sequence),
        "cid": state_cid,
        "document": state.data,
        "published": state.published,
        **state.indexes,
    }
    if digest:
        fields["digest"] = digest
    with redis_errors():
        await client.hset(keys.state(state.node_id), mapping=fields)


def _pinned(last: dict[Any, Any]) -> set[str]:
    """The CIDs a published state keeps pinned: the state document and its three indexes."""
    return {str(last[name]) for name in ("cid", *INDEXES) if last.get(name)}


def _digest(documents: dict[str, bytes], swarm: tuple[str, ...]) -> str:
    """What the published state says: its indexes and where its daemon is (a daemon that moved
    is published again, so trusted peers can peer with it)."""
    hasher = hashlib.sha3_256()
    for name in INDEXES:
        hasher.update(documents[name])
    hasher.update("\n".join(swarm).encode())
    return hasher.hexdigest()
