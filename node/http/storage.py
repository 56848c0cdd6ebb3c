"""``GET /storage`` and ``POST /storage/gc``: the node's disk against its budget, and a garbage
collection on demand (``node.executor.garbage``); the admin's, since they show and change what
the whole node keeps."""

from __future__ import annotations

from dataclasses import asdict

from aiohttp import web

from node.http.appkeys import NODE
from node.http.auth import require_admin
from node.http.openapi import operation
from node.http.schemas import answer, ref

ADMIN_ONLY = "only the node's admin may see or collect its storage: send the admin token"


@operation(
    "The node's disk: what its IPFS repository and local cache hold, its budget, the last collection",
    "node",
    {200: answer("Usage and budget", ref("Storage"))},
    errors=(403,),
    auth=True,
)
async def storage(request: web.Request) -> web.Response:
    """``GET /storage``: usage now (bytes), the budget and the last collection's report."""
    await require_admin(request, ADMIN_ONLY)
    garbage = request.app[NODE].garbage
    usage = await garbage.usage()
    last = garbage.last.report() if garbage.last is not None else None
    return web.json_response(
        {
            "budget": usage.budget,
            "interval_s": request.app[NODE].settings.gc_interval,
            "usage": {**asdict(usage), "total": usage.total},
            "last_collection": last,
        }
    )


@operation(
    "Collect garbage now: evict the least recently used intermediates down to the budget, "
    "then run IPFS's garbage collection and trim the local cache",
    "node",
    {200: answer("What the collection reclaimed", ref("Collection"))},
    errors=(403,),
    auth=True,
)
async def collect(request: web.Request) -> web.Response:
    """``POST /storage/gc``: one collection, answered when it is done (one at a time: a second
    request waits for the first)."""
    who = (await require_admin(request, ADMIN_ONLY)).name
    collection = await request.app[NODE].garbage.collect(reason="requested", who=who)
    return web.json_response(collection.report())
