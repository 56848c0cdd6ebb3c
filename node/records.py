"""Signed records: plans, step receipts, provenance and state documents.

A signed record is a JSON object carrying ``signer`` (the signing node's id) and ``signature``.
The signature is Ed25519 over the RFC 8785 canonical form (JCS: sorted keys, no whitespace,
ECMAScript number formatting, UTF-8) of the object without its ``signature`` member, encoded as
standard base64 (RFC 4648, with padding). The stored bytes are the JCS form of the whole
object, so a record's CID names exactly what was signed, and any language with a JCS
implementation can check it (cache ids use ``node.canonical`` instead, as docs/design.md "Identifiers" fixes).

The signer's public key is inside its node id (``did:key``: multibase base58btc of the
``ed25519-pub`` multicodec and the 32 raw key bytes; see ``node.identity``), so anyone can
verify a record without this code:

1. parse the bytes as JSON; check that their JCS form is the same bytes;
2. remove ``signature`` and base64-decode it; take the JCS form of what is left;
3. verify the Ed25519 signature over those bytes with the key inside ``signer``.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from node.errors import InvalidInput
from node.identity import NodeIdentity, public_key_from_node_id


@dataclass(frozen=True)
class SignedRecord:
    """A signed record's exact bytes and the CID they have in IPFS."""

    cid: str
    data: bytes


class RecordError(InvalidInput):
    """A record that is not canonical, not signed, or not signed by whom it says."""

    code = "invalid_record"


def jcs(value: Any) -> bytes:
    """The RFC 8785 canonical bytes of a JSON value; RecordError if it has no JSON form."""
    try:
        return bytes(rfc8785.dumps(value))
    except (rfc8785.CanonicalizationError, TypeError, ValueError, RecursionError) as exc:
        raise RecordError(f"not canonicalizable JSON: {exc}") from exc


def sign_record(identity: NodeIdentity, payload: dict[str, Any]) -> bytes:
    """The JCS bytes of ``payload`` signed by this node (``signer`` and ``signature`` added)."""
    unsigned = {key: value for key, value in payload.items() if key != "signature"}
    unsigned["signer"] = identity.node_id
    signature = identity.sign(jcs(unsigned))
    return jcs({**unsigned, "signature": base64.b64encode(signature).decode()})


def verify_record(data: bytes, trusted: set[str] | None = None) -> dict[str, Any]:
    """The record in ``data`` if it is canonical and validly signed (by a trusted signer, when
    ``trusted`` is given); RecordError saying what is wrong otherwise."""
    try:
        record = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise RecordError(f"not JSON: {exc}") from exc
    if not isinstance(record, dict):
        raise RecordError("a signed record is a JSON object")
    if jcs(record) != data:
        raise RecordError("not in canonical (RFC 8785) form: the bytes are not what was signed")
    signer, encoded = record.get("signer"), record.pop("signature", None)
    if not isinstance(signer, str) or not isinstance(encoded, str):
        raise RecordError("missing signer or signature")
    if trusted is not None and signer not in trusted:
        raise RecordError(f"signer {signer} is not trusted", signer=signer)
    try:
        key = Ed25519PublicKey.from_public_bytes(public_key_from_node_id(signer))
        signature = base64.b64decode(encoded, validate=True)
        if base64.b64encode(signature).decode() != encoded:  # one record, one spelling, one CID
            raise RecordError("signature is not in canonical base64", signer=signer)
        key.verify(signature, jcs(record))
    except (ValueError, binascii.Error) as exc:
        raise RecordError(f"malformed signer or signature: {exc}", signer=signer) from exc
    except InvalidSignature:
        raise RecordError("signature does not match the record", signer=signer) from None
    return {**record, "signature": encoded}
