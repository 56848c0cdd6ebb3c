"""Starting on an empty Redis: the node's runs, steps and content come back from its own last
published state (DESIGN.md "IPNS state").

The last state is whichever verified state, signed by this node, has the highest sequence: the
one its IPNS name points at (when the daemon holds the node's key) or the copy kept in the data
directory. Its index documents are read from IPFS and added to Redis; nothing already in Redis
is overwritten, so recovering on a database that was not empty is harmless.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from node.errors import NodeError
from node.identity import NodeIdentity
from node.records import RecordError
from node.store.ipfs import IpfsClient
from node.sync.connection import redis_errors
from node.sync.keys import Keys
from node.sync.publisher import STATE_FILE, IpnsNames
from node.sync.snapshot import INDEX_MAX_BYTES, Restored, Snapshot
from node.sync.state import INDEXES, STATE_MAX_BYTES, NodeState, read_state

log = logging.getLogger(__name__)

RESOLVE_TIMEOUT_S = 10.0


async def recover(
    *,
    identity: NodeIdentity,
    ipfs: IpfsClient,
    client: aioredis.Redis,
    keys: Keys,
    names: IpnsNames,
    data_dir: Path,
) -> Restored | None:
    """If Redis holds no state of this node, restore its indexes from its last published state;
    what was restored (None: nothing to do, or no state found)."""
    with redis_errors():
        if await client.exists(keys.state(identity.node_id)):
            return None
    candidates = [await _from_file(data_dir / STATE_FILE, identity.node_id)]
    candidates.append(await _from_ipns(ipfs, names, identity.node_id))
    found = [state for state in candidates if state is not None]
    if not found:
        return None
    state = max(found, key=lambda candidate: candidate.sequence)
    documents = {name: await ipfs.cat_all(state.indexes[name], INDEX_MAX_BYTES) for name in INDEXES}
    restored = await Snapshot(client, keys, identity.node_id).restore(documents)
    fields: dict[Any, Any] = {
        "sequence": str(state.sequence),
        "document": state.data,
        "published": state.published,
    }
    with redis_errors():  # the next state continues the sequence; no digest: it is published anew
        await client.hset(keys.state(identity.node_id), mapping=fields | state.indexes)
    log.warning(
        "Redis held no state of this node: restored %d runs, %d steps and %d content entries from state %d",
        restored.runs,
        restored.steps,
        restored.contents,
        state.sequence,
    )
    return restored


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
    try:
        found = await names.get()
        if not found.key_existed:  # a new key names nothing yet; resolving it would only wait
            return None
        cid = await ipfs.name_resolve(found.ipns_name, timeout_s=RESOLVE_TIMEOUT_S)
        return read_state(await ipfs.cat_all(cid, STATE_MAX_BYTES), {node_id})
    except NodeError as exc:
        log.warning("this node's IPNS name could not be resolved (%s)", exc.message)
        return None
