"""Small request bodies (JSON, a recipe's YAML) read whole, under a size limit and a deadline.

A declared size over the route's limit is 413 before anything is read; a body that does not
arrive within ``ARTDAG_BODY_TIMEOUT`` is 408, so slow senders cannot hold the node. (Uploads
stream under their own limits: ``node.http.cache``.)
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from node.errors import RequestTimeout, TooLarge
from node.http.appkeys import NODE


async def read_small_body(request: web.Request, limit: int) -> bytes:
    """The whole body, at most ``limit`` bytes (413 ``too_large`` beyond, declared or found),
    within the node's body deadline (408 ``request_timeout``)."""
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(f"the body is over {limit} bytes", field="body", limit=limit)
    deadline_s = request.app[NODE].settings.body_timeout
    try:
        raw = await asyncio.wait_for(request.read(), deadline_s)  # chunked too; client_max_size caps it
    except TimeoutError:
        raise RequestTimeout(
            f"the body did not arrive within {deadline_s:.0f} s; send it whole, then wait for the answer",
            field="body",
        ) from None
    if len(raw) > limit:
        raise TooLarge(f"the body is over {limit} bytes", field="body", limit=limit)
    return raw
