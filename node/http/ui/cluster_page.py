"""``/cluster`` for browsers: the nodes sharing this Redis and what each is doing."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.http.appkeys import NODE
from node.http.ui.templating import page


@page("cluster.html")
async def cluster_page(request: web.Request) -> dict[str, Any]:
    """Each node: id, URL, version, CPU, workers busy and total, its steps, last seen."""
    node = request.app[NODE]
    return {"nodes": await node.peering.cluster(), "self": node.identity.node_id}
