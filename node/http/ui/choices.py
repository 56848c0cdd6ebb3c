"""The media offered in a run form's input lists (the recipes pages and a run's "Run again")."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.http.appkeys import NODE

MEDIA_CHOICES = 200  # newest media offered in an input's list; older ones by CID or upload


async def media_choices(app: web.Application) -> list[dict[str, Any]]:
    """The newest media of the library (uploads, imports, runs' outputs; not steps'
    intermediates), named by asset name where they have one, for an input's list."""
    index = app[NODE].store.index
    content_ids, _ = await index.newest_media(None, 0, MEDIA_CHOICES, intermediates=False)
    entries = await index.get_many(content_ids)
    names = await index.names_by_content()
    return [{"entry": entry, "name": names.get(entry.content_id, [""])[0]} for entry in entries]
