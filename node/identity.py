"""The node's Ed25519 identity: its signing key, kept 0600 in the data directory, and node id.

The node id is the key's ``did:key`` identifier (multibase base58btc of the multicodec
``ed25519-pub`` prefix and the 32 raw key bytes, ``z6Mk…``), so anyone holding the id can
recover the public key and check a signature without asking the node.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from multiformats import multibase, multicodec

from node.private_files import create_private_file

KEY_FILE = "node_key.pem"


@dataclass(frozen=True)
class NodeIdentity:
    """The node's key pair and the ids derived from it."""

    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def public_key_bytes(self) -> bytes:
        return self.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @functools.cached_property
    def node_id(self) -> str:
        return node_id_for(self.public_key_bytes)  # encoding is slow; every GET /runs/{id} asks

    def sign(self, data: bytes) -> bytes:
        return self.private_key.sign(data)


def node_id_for(public_key: bytes) -> str:
    """The did:key identifier (without the ``did:key:`` scheme) of a raw Ed25519 public key."""
    return multibase.encode(multicodec.wrap("ed25519-pub", public_key), "base58btc")


def public_key_from_node_id(node_id: str) -> bytes:
    """The raw public key inside a node id; raises ValueError for anything else."""
    try:
        codec, raw = multicodec.unwrap(multibase.decode(node_id))
    except (KeyError, ValueError) as exc:
        raise ValueError(f"not a node id: {node_id!r}") from exc
    if codec.name != "ed25519-pub" or len(raw) != 32:
        raise ValueError(f"not an Ed25519 node id: {node_id!r}")
    return bytes(raw)


def load_or_create(data_dir: Path) -> NodeIdentity:
    """Read the node key, creating it (0600, never overwritten) on first start. Blocking."""
    path = data_dir / KEY_FILE
    if not path.exists():
        _create_key_file(path)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} does not hold an Ed25519 private key")
    return NodeIdentity(key)


def _create_key_file(path: Path) -> None:
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    create_private_file(path, pem)
