"""Identifiers of content: CIDs (where bytes live in IPFS) and SHA3-256 content ids.

CIDs entering the node in any form (CIDv0 ``Qm…``, base58 ``zb2…``, base32 ``bafy…``) are parsed
with the multiformats library and printed as CIDv1 base32, so one item has one spelling in
every index and URL. Anything that does not parse is refused with :class:`InvalidCid`.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re

from multiformats import CID

from node.store.errors import InvalidCid

_CONTENT_ID = re.compile(r"[0-9a-fA-F]{64}")
# How clients may spell a CID (docs/api.md): CIDv0 ``Qm…``, CIDv1 in base58btc ``z…`` or base32
# ``b…``; a regular expression (for the API's document too), a superset of what parses.
CID_SPELLING = r"Qm[1-9A-HJ-NP-Za-km-z]{44}|z[1-9A-HJ-NP-Za-km-z]{1,200}|b[a-z2-7]{1,200}"
REF_SPELLING = rf"[0-9a-fA-F]{{64}}|{CID_SPELLING}"  # a CID or a SHA3-256 hex, either case
_MAX_CID_LENGTH = 512
_MAX_NORMALIZED_LENGTH = 128


# Every CID the node makes: CIDv1, raw or dag-pb, SHA2-256, base32. Recognized with the
# standard library (microseconds) before the general parser (half a millisecond a call, as
# multiformats checks types at run time): indexes of tens of thousands of entries are read back.
_COMMON_SPELLING = re.compile(r"b[a-z2-7]{58}")
_COMMON_PREFIXES = (bytes([0x01, 0x55, 0x12, 0x20]), bytes([0x01, 0x70, 0x12, 0x20]))  # raw, dag-pb
_RAW_SHA256 = _COMMON_PREFIXES[0]


def normalize_cid(text: str) -> str:
    """The CIDv1 base32 spelling of a CID in any supported form; InvalidCid otherwise."""
    if not isinstance(text, str) or not text or len(text) > _MAX_CID_LENGTH:
        raise InvalidCid(f"not a CID: {str(text)[:80]!r}", ref=str(text)[:80])
    if _is_common_and_canonical(text):
        return text
    return _normalized_cid(text)


def _is_common_and_canonical(text: str) -> bool:
    if not _COMMON_SPELLING.fullmatch(text):
        return False
    raw = base64.b32decode(text[1:].upper() + "======")  # 58 letters: 36 bytes
    # Re-encoded: other trailing bits would be a second spelling of the same CID.
    return raw[:4] in _COMMON_PREFIXES and _base32(raw) == text


@functools.lru_cache(maxsize=4096)
def _normalized_cid(text: str) -> str:
    # Parsing is slow (multiformats validates every call's types): a hot path of every read.
    try:
        cid = CID.decode(text.strip())
    except Exception as exc:  # the parser raises KeyError/ValueError subclasses, among others
        raise InvalidCid(
            f"not a CID: {text[:80]!r}; a CID looks like bafy... or bafk... (CIDv1) or Qm... (CIDv0)",
            ref=text[:80],
        ) from exc
    normalized = str(cid.set(version=1).encode("base32"))
    if len(normalized) > _MAX_NORMALIZED_LENGTH:  # identity or exotic hashes: not content we add
        raise InvalidCid(f"CID too long: {text[:80]!r}", ref=text[:80])
    return normalized


LEAF_MAX_BYTES = 256 * 1024  # the chunker's size (``IMPORT_PARAMS``): bytes up to this are one leaf


def leaf_cid(data: bytes) -> str:
    """The CID ``ipfs add`` gives ``data`` under the node's import settings (CIDv1, raw leaves,
    SHA2-256) when it fits in one leaf: computed here, with no daemon call."""
    if not 0 < len(data) <= LEAF_MAX_BYTES:
        raise ValueError(f"{len(data)} bytes are not one leaf (1 to {LEAF_MAX_BYTES} bytes)")
    return _base32(_RAW_SHA256 + hashlib.sha256(data).digest())


def _base32(cid_bytes: bytes) -> str:
    """Multibase base32 (``b``, lower case, unpadded) of a binary CID."""
    return "b" + base64.b32encode(cid_bytes).decode().lower().rstrip("=")


def is_content_id(text: str) -> bool:
    """Whether ``text`` has the form of a SHA3-256 hex digest (either case)."""
    return bool(_CONTENT_ID.fullmatch(text))


def normalize_ref(ref: str) -> tuple[str, str]:
    """Classify a client's reference: ``("content_id", hex)`` or ``("cid", cidv1)``."""
    if is_content_id(ref):
        return "content_id", ref.lower()
    return "cid", normalize_cid(ref)
