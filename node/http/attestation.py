"""``GET /runs/{run_id}/attestation``: a completed run's in-toto/SLSA attestation (DSSE)."""

from __future__ import annotations

from aiohttp import web

from node.errors import Conflict, NotFound
from node.executor.provenance import RECORD_MAX_BYTES
from node.http.appkeys import NODE
from node.http.openapi import operation
from node.http.schemas import ref
from node.sync.run_status import RunStatus, is_final

DSSE_TYPE = "application/vnd.dsse.envelope.v1+json"  # the envelope's own media type, on request


@operation(
    "The in-toto attestation (SLSA provenance v1) of a completed run, in a signed DSSE envelope",
    "runs",
    {
        200: {
            "description": "The envelope, the same bytes on every request (ETag: its CID)",
            "content": {kind: {"schema": ref("DsseEnvelope")} for kind in ("application/json", DSSE_TYPE)},
        }
    },
    errors=(409,),
    description="Written with the run's provenance by the node that finished it, signed with that "
    "node's Ed25519 key over the DSSE PAE; the signature's keyid is the node's did:key (GET /identity). "
    "Standard tools verify it; docs/cooperation.md 'Attestations (in-toto / SLSA)' shows how.",
)
async def attestation(request: web.Request) -> web.Response:
    """``GET /runs/{run_id}/attestation``: the signed envelope of a completed run, as stored.
    409 until the run completes; 404 for a run that completed before nodes wrote them."""
    node = request.app[NODE]
    record = await node.run_manager.get(request.match_info["run_id"])
    run_id = record["run_id"]
    status = record["status"]
    if status != RunStatus.COMPLETED:
        then = "" if is_final(status) else f"; follow /runs/{run_id}/events and ask again after run_completed"
        raise Conflict(f"run is {status}: only a completed run has an attestation{then}", run_id=run_id)
    cid = record.get("attestation_cid")
    if not cid:
        raise NotFound(
            f"run {run_id} completed before this node wrote attestations; its signed provenance is at "
            f"/runs/{run_id}/provenance",
            run_id=run_id,
        )
    entry = await node.store.resolve(cid)
    data = await node.store.read_all(entry, RECORD_MAX_BYTES)
    wanted = DSSE_TYPE if DSSE_TYPE in request.headers.get("Accept", "") else "application/json"
    return web.Response(
        body=data, content_type=wanted, headers={"ETag": f'"{entry.cid}"', "Cache-Control": "no-cache"}
    )
