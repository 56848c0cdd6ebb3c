"""The node's state document: what it has, signed, published under its IPNS name.

A state document is a signed record (``node.records``) naming the node (id, public key, URL,
IPNS name, IPFS peer id and the swarm addresses its daemon is dialled at), a sequence number
that only grows, and the CIDs of three index
documents: the node's runs, its step index and its content. Peers take whichever verified
state of a node has the highest sequence, whether it came over pubsub, IPNS or ``GET /state``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from node.identity import NodeIdentity, public_key_from_node_id
from node.records import RecordError, sign_record, verify_record
from node.store.cid import normalize_cid
from node.store.errors import InvalidCid

STATE_KIND = "artdag/state"
STATE_VERSION = 1
STATE_TOPIC = "artdag-state-v1"  # the IPFS pubsub topic every node announces its states on
STATE_MAX_BYTES = 64 * 1024
INDEXES = ("runs", "steps", "contents")


@dataclass(frozen=True)
class NodeState:
    """A verified state document: who published it, its sequence and its index CIDs."""

    node_id: str
    sequence: int
    url: str
    ipns_name: str
    peer_id: str
    indexes: dict[str, str]  # "runs" | "steps" | "contents" -> CID
    published: str
    data: bytes  # the signed bytes, exactly
    swarm: tuple[str, ...] = ()  # the daemon's multiaddrs (``.../p2p/PEER_ID``): peers peer with it


def sign_state(
    identity: NodeIdentity,
    *,
    sequence: int,
    url: str,
    ipns_name: str,
    peer_id: str,
    indexes: dict[str, str],
    published: str,
    swarm: tuple[str, ...] = (),
) -> bytes:
    """The signed bytes of this node's state document."""
    return sign_record(
        identity,
        {
            "kind": STATE_KIND,
            "version": STATE_VERSION,
            "node_id": identity.node_id,
            "public_key": base64.b64encode(identity.public_key_bytes).decode(),
            "url": url,
            "ipns_name": ipns_name,
            "peer_id": peer_id,
            "swarm": list(swarm),
            "sequence": sequence,
            "published": published,
            **{name: indexes[name] for name in INDEXES},
        },
    )


def read_state(data: bytes, trusted: set[str]) -> NodeState:
    """The state in ``data`` if it is a well-formed state document validly signed by one of
    ``trusted``; RecordError saying what is wrong otherwise."""
    if len(data) > STATE_MAX_BYTES:
        raise RecordError(f"a state document is at most {STATE_MAX_BYTES} bytes, got {len(data)}")
    record = verify_record(data, trusted)
    if record.get("kind") != STATE_KIND or record.get("version") != STATE_VERSION:
        raise RecordError(f"not a version {STATE_VERSION} state document")
    signer = record["signer"]
    if record.get("node_id") != signer:
        raise RecordError("node_id is not the signer", signer=signer)
    try:
        key = base64.b64decode(str(record.get("public_key")), validate=True)
    except ValueError as exc:
        raise RecordError(f"malformed public_key: {exc}", signer=signer) from exc
    if key != public_key_from_node_id(signer):
        raise RecordError("public_key is not the signer's key", signer=signer)
    sequence = record.get("sequence")
    if not isinstance(sequence, int) or isinstance(sequence, bool) or sequence < 1:
        raise RecordError("sequence must be a positive integer", signer=signer)
    return NodeState(
        node_id=signer,
        sequence=sequence,
        url=_text(record, "url"),
        ipns_name=_text(record, "ipns_name"),
        peer_id=_text(record, "peer_id"),
        indexes={name: _cid(record, name) for name in INDEXES},
        published=_text(record, "published"),
        data=data,
        swarm=_swarm(record),
    )


def _text(record: dict[str, Any], name: str) -> str:
    value = record.get(name)
    if not isinstance(value, str):
        raise RecordError(f"{name} must be a string", signer=record["signer"])
    return value


def _swarm(record: dict[str, Any]) -> tuple[str, ...]:
    """The daemon's addresses; a state signed before they were published has none."""
    value = record.get("swarm", [])
    if not isinstance(value, list) or not all(
        isinstance(item, str) and item.startswith("/") for item in value
    ):
        raise RecordError("swarm must be a list of multiaddrs", signer=record["signer"])
    return tuple(value)


def _cid(record: dict[str, Any], name: str) -> str:
    try:
        return normalize_cid(_text(record, name))
    except InvalidCid as exc:
        raise RecordError(f"{name} is not a CID: {exc.message}", signer=record["signer"]) from exc
