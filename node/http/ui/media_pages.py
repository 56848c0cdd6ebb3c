"""``/media`` for browsers: a grid of images, video and audio with cached thumbnails, a kind
filter, upload, and delete where the deletion rules allow (the reason shown where they don't)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.errors import InvalidInput
from node.http.appkeys import NODE
from node.http.cache import int_param
from node.http.ui.templating import page
from node.http.ui.users import current_user
from node.sync.keys import MEDIA_KINDS

PAGE_SIZE = 48


@page("media.html")
async def media_page(request: web.Request) -> dict[str, Any]:
    kind = request.query.get("kind") or None
    if kind is not None and kind not in MEDIA_KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(MEDIA_KINDS)}", field="kind")
    offset = int_param(request, "offset", 0, 0, 10**9)
    intermediates = request.query.get("intermediates") == "true"  # steps' outputs: hidden unless asked
    index = request.app[NODE].store.index
    content_ids, total = await index.newest_media(kind, offset, PAGE_SIZE, intermediates=intermediates)
    entries = await index.get_many(content_ids)
    names = await index.names_by_content()
    user = await current_user(request)
    refusals = await request.app[NODE].deletion.content_refusals(entries, user) if user else {}
    return {
        "items": [
            {
                "entry": entry,
                "names": names.get(entry.content_id, []),
                "refusal": refusals.get(entry.content_id),
            }
            for entry in entries
        ],
        "kinds": MEDIA_KINDS,
        "kind": kind or "",
        "intermediates": intermediates,
        "extra": "?intermediates=true" if intermediates else "",
        "offset": offset,
        "total": total,
        "page_size": PAGE_SIZE,
    }
