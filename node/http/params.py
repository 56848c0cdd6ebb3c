"""Path parameters: how routes match them, and what the handlers accept of them (the same
patterns as the document's, ``node.http.schemas``)."""

from __future__ import annotations

import re

from aiohttp import web

from node.store.cid import CID_SPELLING, REF_SPELLING, normalize_cid
from node.store.errors import InvalidCid

_REF = re.compile(REF_SPELLING)
_CID = re.compile(CID_SPELLING)


def path_parameter(name: str, *siblings: str) -> str:
    """A route's last path segment ``{name}`` that is never one of ``siblings``, the literal
    segments of routes beside it: a concrete path wins over a pattern for every method, as
    OpenAPI reads paths, so ``DELETE /cache/upload`` is 405 (``Allow: POST``), not ``DELETE
    /cache/{ref}`` of a ref ``upload``, and a 405 never names a pattern's methods."""
    return f"{{{name}:(?!(?:{'|'.join(siblings)})$)[^{{}}/]+}}"


def ref_param(request: web.Request, name: str) -> str:
    """The path parameter ``name`` as a ref to content: a CID (``Qm…``, ``z…``, ``b…``) or a
    SHA3-256 hex; 400 ``invalid_cid`` for anything else."""
    value = request.match_info[name]
    if not _REF.fullmatch(value):
        raise InvalidCid(f"{name} is a CID (Qm…, z… or b…) or a SHA3-256 hex, not {value[:80]!r}", field=name)
    return value


def cid_param(request: web.Request, name: str) -> str:
    """The path parameter ``name`` as a CID (``Qm…``, ``z…``, ``b…``), in CIDv1 base32; 400
    ``invalid_cid`` for anything else."""
    value = request.match_info[name]
    if not _CID.fullmatch(value):
        raise InvalidCid(f"{name} is a CID (Qm…, z… or b…), not {value[:80]!r}", field=name)
    return normalize_cid(value)
