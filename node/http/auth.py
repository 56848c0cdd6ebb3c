"""Who a request acts for: the bearer token, checked by the app's authenticator."""

from __future__ import annotations

from aiohttp import web

from node.auth.errors import AuthRequired
from node.auth.local import User
from node.http.appkeys import AUTH


async def require_user(request: web.Request) -> User:
    """The authenticated user; 401 (before any body is read) when there is none."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthRequired("authentication required: send 'Authorization: Bearer TOKEN'")
    user = await request.app[AUTH].authenticate(token.strip())
    if user is None:
        raise AuthRequired("invalid or revoked token")
    return user
