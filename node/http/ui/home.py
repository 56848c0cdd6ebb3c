"""``/`` for browsers: what this node is, whether Redis and IPFS answer, its peers, its counts and
its latest runs."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.errors import NodeError
from node.http.appkeys import NODE
from node.http.health import NAME, dependencies
from node.http.ui.templating import page
from node.http.ui.users import current_user
from node.sync.connection import redis_errors

RECENT_RUNS = 8


@page("home.html")
async def home(request: web.Request) -> dict[str, Any]:
    app = request.app
    health = await dependencies(app)
    return {
        "name": NAME,
        "public_url": app[NODE].settings.public_url,
        "identity": app[NODE].identity,
        "names": await _names(app),
        "health": health,
        "peers": await _or_none(app[NODE].peer_sync.status()) if health["redis"]["healthy"] else None,
        "counts": await _counts(app) if health["redis"]["healthy"] else None,
        "runs": await _or_none(app[NODE].runs.listing(0, RECENT_RUNS))
        if health["redis"]["healthy"]
        else None,
        "disk": await _disk(request) if health["ipfs"]["healthy"] else None,
    }


async def _disk(request: web.Request) -> dict[str, Any] | None:
    """The admin's view of the disk budget: usage now and the last collection."""
    user = await current_user(request)
    if user is None or not user.is_admin:
        return None
    garbage = request.app[NODE].garbage
    usage = await _or_none(garbage.usage())
    last = garbage.last.report() if garbage.last is not None else None
    return {"usage": usage, "last": last} if usage is not None else None


async def _names(app: web.Application) -> Any:
    try:
        return await app[NODE].names.get()
    except NodeError:  # the daemon is down: the health section says so
        return None


async def _or_none(pending: Any) -> Any:
    try:
        return await pending
    except NodeError:
        return None


async def _counts(app: web.Application) -> dict[str, int] | None:
    """Sizes of the node's listings, read in one round trip (ZCARD/HLEN, never a scan)."""
    keys = app[NODE].keys
    listed = {
        "runs": keys.runs,
        "active runs": keys.runs_active,
        "content items": keys.contents,
        "media": keys.media,
        "recipes": keys.recipes,
        "steps computed": keys.steps,
    }
    try:
        with redis_errors():
            async with app[NODE].redis.pipeline(transaction=False) as pipe:
                for key in listed.values():
                    pipe.zcard(key)
                sizes = await pipe.execute()
    except NodeError:
        return None
    return dict(zip(listed, (int(size) for size in sizes), strict=True))
