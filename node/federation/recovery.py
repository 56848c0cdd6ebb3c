"""Starting on an empty Redis: the node's runs, steps and content come back from its own last
published state (docs/design.md "Published state").

The last state is whichever verified state, signed by this node, has the highest sequence: the
one its IPNS name points at (when the daemon holds the node's key) or the copy kept in the data
directory. Its index documents are read from IPFS and added to Redis; nothing already in Redis
is overwritten, so recovering on a database that was not empty is harmless.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Literal

import redis.asyncio as aioredis

from node.errors import NodeError, Unavailable
from node.federation.publisher import STATE_FILE, IpnsNames, keep_state
from node.federation.snapshot import INDEX_MAX_BYTES, Snapshot
from node.federation.state_document import INDEXES, STATE_MAX_BYTES, NodeState, read_state
from node.identity import NodeIdentity
from node.records import RecordError
from node.store.cid import leaf_cid
from node.store.errors import ContentNotFound
from node.store.ipfs import IpfsClient
from node.sync.connection import redis_errors
from node.sync.keys import Keys

log = logging.getLogger(__name__)

RESOLVE_TIMEOUT_S = 10.0


Found = Literal["present", "restored", "fresh"]


class RecoveryFailed(Unavailable):
    """This node's last state exists but could not be read back (yet): nothing is published."""

    code = "recovery_failed"


async def recover(
    *,
    identity: NodeIdentity,
    ipfs: IpfsClient,
    client: aioredis.Redis,
    keys: Keys,
    names: IpnsNames,
    data_dir: Path,
) -> Found:
    """If Redis holds no state of this node, restore its indexes from its last published state.

    ``present``: Redis holds it (nothing to do); ``restored``; ``fresh``: the node never
    published one. RecoveryFailed (or a Redis or IPFS error) if a last state exists but could
    not be read: the caller must not publish a new one over it."""
    with redis_errors():
        if await client.exists(keys.state(identity.node_id)):
            return "present"
    state = await _last_state(ipfs, names, data_dir, identity.node_id)
    if state is None:
        return "fresh"
    try:
        documents = {name: await ipfs.cat_all(state.indexes[name], INDEX_MAX_BYTES) for name in INDEXES}
        restored = await Snapshot(client, keys, identity.node_id).restore(documents)
    except (NodeError, KeyError, TypeError, ValueError) as exc:
        why = exc.message if isinstance(exc, NodeError) else repr(exc)
        raise RecoveryFailed(
            f"state {state.sequence} of this node could not be read back ({why}); nothing is published "
            f"until it is. To give it up and start over, remove {data_dir / STATE_FILE} and the IPFS "
            f"daemon's key {names.key}"
        ) from exc
    # A state is one block; unpinned when the next is published, which continues its sequence.
    await keep_state(client, keys, state, leaf_cid(state.data))
    log.warning(
        "Redis held no state of this node: restored %d runs, %d steps and %d content entries from state %d",
        restored.runs,
        restored.steps,
        restored.contents,
        state.sequence,
    )
    return "restored"


async def _last_state(ipfs: IpfsClient, names: IpnsNames, data_dir: Path, node_id: str) -> NodeState | None:
    """The newer of the state kept in the data directory and the one the node's IPNS name
    points at; None if there is neither. A name with no record counts as none; one that cannot
    be resolved (the daemon down, a timeout) counts as none when the file is there (it is written
    with every state), and fails recovery when not."""
    kept = await _from_file(data_dir / STATE_FILE, node_id)
    try:
        named = await _from_ipns(ipfs, names, node_id)
    except ContentNotFound:  # the daemon knows no record under the name: nothing was published
        named = None
    except NodeError as exc:
        if kept is None:
            raise RecoveryFailed(f"this node's IPNS name could not be resolved ({exc.message})") from exc
        log.warning("this node's IPNS name could not be resolved (%s); using %s", exc.message, STATE_FILE)
        named = None
    found = [state for state in (kept, named) if state is not None]
    return max(found, key=lambda state: state.sequence) if found else None


async def _from_file(path: Path, node_id: str) -> NodeState | None:
    try:
        data = await asyncio.to_thread(path.read_bytes)
        return read_state(data, {node_id})
    except FileNotFoundError:
        return None
    except (OSError, RecordError) as exc:
        log.warning("the state kept in %s is unusable (%s)", path, exc)
        return None


async def _from_ipns(ipfs: IpfsClient, names: IpnsNames, node_id: str) -> NodeState | None:
    found = await names.get()
    if not found.key_existed:  # a key made at this start names nothing yet
        return None
    # The daemon that holds the key holds the record of every publication made with it: asking
    # it first answers "never published" at once, where a resolve would wait out its deadline.
    if not await ipfs.holds_ipns_record(found.ipns_name):
        return None
    cid = await ipfs.name_resolve(found.ipns_name, timeout_s=RESOLVE_TIMEOUT_S)
    return read_state(await ipfs.cat_all(cid, STATE_MAX_BYTES), {node_id})
