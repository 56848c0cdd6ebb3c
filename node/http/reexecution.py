"""``/provenance/{cid}/reexecute`` and ``/reexecutions/{id}``: re-execute a provenance record here.

The POST checks everything cheap first (the token, the CID's spelling, this node's capacity,
then the record itself: retrievable, signed, a provenance record whose plan and receipts are
valid records), so nothing expensive starts for junk; then the steps run in the background and
the answer is 202 with where to follow them (``Location``). Re-executions take as long as the
original render, so the POST never waits for them.
"""

from __future__ import annotations

from aiohttp import web

from node.errors import Forbidden, NotFound
from node.executor.reexecution import load_original
from node.http.appkeys import NODE
from node.http.auth import require_user
from node.http.openapi import operation
from node.http.params import cid_param
from node.http.schemas import REEXECUTION_LINKS, answer, ref

JOB_ID_LENGTH = 16


@operation(
    "Re-execute a provenance record's steps on this node and compare every output by CID",
    "provenance",
    {202: answer("Started; follow it at url (Location)", ref("Reexecution"), REEXECUTION_LINKS)},
    errors=(400, 403, 404, 429, 502),
    description=(
        "Every step runs again here from its recorded inputs, without the step index, and each "
        "gets a verdict: reproduced, different (both CIDs) or not reproducible here (another "
        "runtime or CPU class). The end is a signed artdag/reexecution record (record_cid). "
        "404 if the record is not retrievable from this node's IPFS daemon; 429 "
        "too_many_reexecutions (Retry-After) while this node runs as many as it may at once."
    ),
    auth=True,
)
async def start(request: web.Request) -> web.Response:
    """``POST /provenance/{cid}/reexecute``: 202 and the job's status."""
    user = await require_user(request)
    cid = cid_param(request, "cid")
    node = request.app[NODE]
    node.reexecutions.check_capacity()  # before the records are read
    original = await load_original(node.ipfs, cid)
    trusted = {node.identity.node_id, *node.peer_sync.peers}
    if not user.is_admin and not original.signed_by(trusted):
        raise Forbidden(
            "this record was signed by a node this one does not trust, and its plan's steps would run "
            "on this node's workers as written: ask this node's admin to re-execute it, or ask a node "
            "that trusts its signer"
        )
    job = node.reexecutions.start(original)
    return web.json_response(job.status(), status=202, headers={"Location": job.status()["url"]})


@operation(
    "A re-execution's progress, its steps' verdicts so far, and its signed record once done",
    "provenance",
    {200: answer("The re-execution", ref("Reexecution"))},
)
async def status(request: web.Request) -> web.Response:
    """``GET /reexecutions/{job_id}``: running, done (``record_cid``) or failed (``error``)."""
    job_id = request.match_info["job_id"]
    if len(job_id) != JOB_ID_LENGTH or not all(char in "0123456789abcdef" for char in job_id):
        raise NotFound(f"no re-execution {job_id[:80]!r}: ids are {JOB_ID_LENGTH} hex digits", id=job_id[:80])
    return web.json_response(request.app[NODE].reexecutions.get(job_id).status())


def add_routes(app: web.Application) -> None:
    app.router.add_post("/provenance/{cid}/reexecute", start, name="provenance-reexecute")
    app.router.add_get("/reexecutions/{job_id}", status, name="reexecution")
