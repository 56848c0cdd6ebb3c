"""What this node is and has, for peers: ``GET /identity``, ``GET /state``, ``GET /peers``."""

from __future__ import annotations

import base64

from aiohttp import web

from node.errors import NotFound
from node.http.appkeys import NODE
from node.http.openapi import operation
from node.http.schemas import answer, ref
from node.store.cid import leaf_cid


@operation(
    "Who this node is: node id, public key, IPNS name, IPFS peer id",
    "node",
    {200: answer("The node's identity", ref("Identity"))},
)
async def identity(request: web.Request) -> web.Response:
    """``GET /identity``: the node id (``did:key``, its Ed25519 public key), the key itself
    (base64), the IPNS name its state is published under and its IPFS daemon's peer id."""
    app = request.app
    names = await app[NODE].names.get()
    node = app[NODE].identity
    return web.json_response(
        {
            "node_id": node.node_id,
            "public_key": base64.b64encode(node.public_key_bytes).decode(),
            "ipns_name": names.ipns_name,
            "peer_id": names.peer_id,
            "url": app[NODE].settings.public_url,
        }
    )


@operation(
    "This node's last published state document (signed)",
    "node",
    {200: answer("The signed state document, exactly as published", ref("StateDocument"))},
    errors=(404,),
)
async def state(request: web.Request) -> web.Response:
    """``GET /state``: the signed bytes of the state this node last published; 404 before the
    first one."""
    document = await request.app[NODE].publisher.current()
    if document is None:
        raise NotFound("this node has not published a state yet")
    return web.Response(
        body=document,
        content_type="application/json",
        headers={"ETag": f'"{leaf_cid(document)}"', "Cache-Control": "no-cache"},
    )


@operation(
    "Trusted peers: the state sequence taken from each, when, and the last error",
    "node",
    {200: answer("Peers", ref("PeerList"))},
)
async def peers(request: web.Request) -> web.Response:
    """``GET /peers``: each peer of ``ARTDAG_PEERS`` with the last state merged from it."""
    return web.json_response({"items": await request.app[NODE].peer_sync.status()})
