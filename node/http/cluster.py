"""``GET /cluster``: every node sharing this Redis, from the registry they keep (their daemons'
addresses, and what each says of itself at each peering round: URL, version, CPU class, workers
busy and total, the steps it is computing), with when each was last seen; a browser gets the
page (``http/ui/cluster_page.py``)."""

from __future__ import annotations

from aiohttp import web

from node.http.appkeys import NODE
from node.http.openapi import operation
from node.http.schemas import answer, ref


@operation(
    "The nodes sharing this node's Redis: what each runs now, and when it was last seen",
    "node",
    {200: answer("Every registered node", ref("Cluster"))},
)
async def cluster(request: web.Request) -> web.Response:
    """``GET /cluster``: ``{"nodes": [...]}``, each live or silent (not heard from for 45 s);
    a node gone for ten minutes is dropped."""
    return web.json_response({"nodes": await request.app[NODE].peering.cluster()})
