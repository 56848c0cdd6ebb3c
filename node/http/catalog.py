"""What this node offers and holds: effects, assets, and provenance records by CID."""

from __future__ import annotations

from aiohttp import web

from node.executor.provenance import verify_provenance
from node.http.appkeys import NODE
from node.http.cache import entry_json, int_param
from node.http.openapi import operation
from node.http.params import cid_param
from node.http.runs import fetch_record
from node.http.schemas import RECORD_LINKS, answer, query, ref
from node.pixels.effects import EFFECTS
from node.sync.index import ContentEntry


@operation(
    "Every effect: version, hash, JSON Schema of its parameters",
    "catalog",
    {200: answer("Effects", ref("EffectList"))},
)
async def effects(request: web.Request) -> web.Response:
    """``GET /effects``: every effect with version, hash and a JSON Schema of its parameters."""
    return web.json_response({"items": [effect.schema() for _, effect in sorted(EFFECTS.items())]})


@operation("Named content", "catalog", {200: answer("Assets", ref("AssetList"))})
async def assets(request: web.Request) -> web.Response:
    """``GET /assets``: named content (given a name at upload), by name."""
    index = request.app[NODE].store.index
    names = await index.assets()
    entries = {entry.content_id: entry for entry in await index.get_many(sorted(set(names.values())))}
    items = [
        _asset(name, entries[content_id])
        for name, content_id in sorted(names.items())
        if content_id in entries
    ]
    return web.json_response({"items": items})


def _asset(name: str, entry: ContentEntry) -> dict[str, object]:
    return {"name": name, **entry_json(entry)}


@operation(
    "A signed record this node holds (signature checked)",
    "provenance",
    {200: answer("The record", ref("SignedRecord"), RECORD_LINKS)},
    errors=(400, 502),
)
async def provenance(request: web.Request) -> web.Response:
    """``GET /provenance/{cid}``: a signed record this node holds (signature checked)."""
    return web.json_response(await fetch_record(request.app, cid_param(request, "cid")))


@operation(
    "Verify a provenance record: signatures, every CID, every hash",
    "provenance",
    {200: answer("The verdict (ok or the problems found)", ref("Verdict"))},
    errors=(400, 502),
    query=(
        query(
            "trust", {"type": "array", "items": {"type": "string"}}, "node ids to trust (default: this node)"
        ),
    ),
)
async def verify(request: web.Request) -> web.Response:
    """``GET /provenance/{cid}/verify?trust=NODE_ID``: the full verdict; trusts this node unless
    other node ids are named."""
    cid = cid_param(request, "cid")
    trusted = set(request.query.getall("trust", [])) or {request.app[NODE].identity.node_id}
    node = request.app[NODE]
    verdict = await verify_provenance(node.ipfs, cid, trusted, node.garbage.evicted)
    body = {"cid": cid, "ok": verdict.ok, "signer": verdict.signer, "trusted": sorted(trusted)}
    return web.json_response(
        {**body, "problems": verdict.problems, "checked": verdict.checked, "evicted": verdict.evicted}
    )


@operation(
    "What happened: runs completed, runs and content deleted (who, when, CIDs), newest first",
    "catalog",
    {200: answer("Activities", ref("ActivityList"))},
    errors=(400,),
    query=(
        query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}, "items to return"),
    ),
)
async def activities(request: web.Request) -> web.Response:
    """``GET /activities?limit=``: the newest activity records."""
    limit = int_param(request, "limit", 50, 1, 1000)  # str.isdigit took '²', which int() refuses
    return web.json_response({"items": await request.app[NODE].activities.newest(limit)})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/activities", activities, name="activities")
    app.router.add_get("/effects", effects, name="effects")
    app.router.add_get("/assets", assets, name="assets")
    app.router.add_get("/provenance/{cid}", provenance, name="provenance")
    app.router.add_get("/provenance/{cid}/verify", verify, name="provenance-verify")
