"""CID normalization: every accepted spelling becomes CIDv1 base32; anything else is refused."""

from __future__ import annotations

import os

import pytest
from multiformats import CID, multihash

from node.store.cid import _normalized_cid, leaf_cid, normalize_cid, normalize_ref
from node.store.errors import InvalidCid

V0 = "QmY7Yh4UquoXHLPFo2XbhXkhBvFoPwmQUSa92pxnxjQuPU"
V0_AS_V1 = "bafybeierhgbz4zp2x2u67urqrgfnrnlukciupzenpqpipiz5nwtq7uxpx4"
RAW_BASE32 = "bafkreidon73zkcrwdb5iafqtijxildoonbwnpv7dyd6ef3qdgads2jc4su"
RAW_BASE58 = "zb2rhe5P4gXftAwvA4eXQ5HJwsER2owDyS9sKaQRRVQPn93bA"


@pytest.mark.parametrize(
    ("given", "expected"),
    [(V0, V0_AS_V1), (V0_AS_V1, V0_AS_V1), (RAW_BASE58, RAW_BASE32), (RAW_BASE32, RAW_BASE32)],
)
def test_accepted_forms_normalize_to_v1_base32(given: str, expected: str) -> None:
    """CIDv0 (Qm…), base58btc (zb2…) and base32 (bafy…) name the same content one way."""
    assert normalize_cid(given) == expected


@pytest.mark.parametrize(
    "garbage",
    ["", "garbage", "Qm123", "bafy", "zzzz", "b" + "a" * 60, V0[:-1], "bafk/../../etc", "x" * 600, "🙂"],
)
def test_garbage_is_invalid_cid(garbage: str) -> None:
    """Anything that does not parse as a CID is refused with InvalidCid (400 invalid_cid)."""
    with pytest.raises(InvalidCid):
        normalize_cid(garbage)


def test_ref_is_a_sha3_hex_or_a_cid() -> None:
    """A 64-hex ref is a content id (lower-cased); anything else must be a CID."""
    assert normalize_ref("AB" * 32) == ("content_id", "ab" * 32)
    assert normalize_ref(V0) == ("cid", V0_AS_V1)
    with pytest.raises(InvalidCid):
        normalize_ref("ab" * 31)


def test_the_quick_path_agrees_with_the_parser() -> None:
    """CIDs of the node's own shape (v1, raw or dag-pb, SHA2-256, base32) are recognized without
    the general parser and come out exactly as it spells them; other shapes still go through
    it; a spelling with stray trailing bits is never taken as it is."""
    for codec in ("raw", "dag-pb"):
        for _ in range(200):
            digest = multihash.digest(os.urandom(32), "sha2-256")
            spelled = str(CID("base32", 1, codec, digest))
            assert normalize_cid(spelled) == spelled == _normalized_cid(spelled)
    data = os.urandom(100)
    assert leaf_cid(data) == str(CID("base32", 1, "raw", multihash.digest(data, "sha2-256")))
    sha512 = str(CID("base32", 1, "raw", multihash.digest(data, "sha2-512")))
    assert normalize_cid(sha512) == sha512
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    last = alphabet.index(RAW_BASE32[-1])
    stray = RAW_BASE32[:-1] + alphabet[last | 1 if last & 1 == 0 else last & ~1]  # the unused bits
    try:
        answer = normalize_cid(stray)
    except InvalidCid:
        answer = ""
    assert answer in ("", RAW_BASE32)  # refused, or spelled canonically: never taken as given
