"""Canonical JSON: the one byte form of everything the node hashes or signs.

``sort_keys=True, separators=(",", ":"), ensure_ascii=False``, UTF-8, no NaN or infinities
(docs/design.md "Identifiers"). Floats print in Python's shortest round-trip form, so 1.5 is always
``1.5``; callers normalize numbers to one type first (a float parameter is always a float).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> bytes:
    """The canonical bytes of a JSON-able value."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def sha3_hex(data: bytes) -> str:
    """SHA3-256 of ``data`` as lower-case hex: the node's content id and cache id function."""
    return hashlib.sha3_256(data).hexdigest()


def canonical_id(value: Any) -> str:
    """SHA3-256 hex of the canonical JSON of ``value``."""
    return sha3_hex(canonical_json(value))
