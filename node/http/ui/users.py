"""Who is looking at a page (None: not logged in, or the token cannot be checked right now)."""

from __future__ import annotations

from aiohttp import web

from node.auth.local import User
from node.errors import NodeError
from node.http.auth import optional_user

USER_KEY = web.RequestKey("ui_user", object)  # User | None, checked once per request


async def current_user(request: web.Request) -> User | None:
    """The page's user, checked once per request; a token that cannot be checked now (Redis
    or its L2 down) shows the page logged out rather than failing it."""
    if USER_KEY not in request:
        try:
            request[USER_KEY] = await optional_user(request)
        except NodeError:
            request[USER_KEY] = None
    user = request[USER_KEY]
    return user if isinstance(user, User) else None
