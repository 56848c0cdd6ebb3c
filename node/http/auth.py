"""Who a request acts for: a bearer token, or the session cookie set by ``GET /auth``.

Both carry the same kind of token and are checked the same way (``Authenticator``). A
cookie is sent by the browser on its own, so a state-changing request authenticated by the
cookie must come from this node's own pages: its ``Origin`` (or, lacking one, its
``Referer``) must be the node's public origin, else 403 ``csrf_refused``. A bearer token is
never sent on its own, so it needs no such check.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from node.auth.errors import AuthRequired, CsrfRefused
from node.auth.local import User
from node.errors import Forbidden
from node.http.appkeys import NODE
from node.http.limits import check_rate

SESSION_COOKIE = "artdag_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def presented_token(request: web.Request) -> tuple[str, bool]:
    """The token a request carries and whether it came in the cookie; ("", False) if none."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip(), False
    cookie = request.cookies.get(SESSION_COOKIE, "")
    return (cookie, True) if cookie else ("", False)


async def require_user(request: web.Request) -> User:
    """The authenticated user; 401 (before any body is read) when there is none, 403 for a
    cookie-borne change from another site, 503 when the token's L2 cannot be asked, 429 for a
    write past the user's rate (``node.http.limits``)."""
    token, from_cookie = presented_token(request)
    if not token:
        raise AuthRequired(
            "authentication required: send 'Authorization: Bearer TOKEN' or log in through your L2"
        )
    if from_cookie and request.method not in SAFE_METHODS:
        check_same_origin(request)
    user, why_not = await request.app[NODE].auth.check(token)
    if user is None:
        raise AuthRequired(f"the token is not accepted: {why_not}")
    if request.method not in SAFE_METHODS:
        await check_rate(request, user)
    return user


async def require_admin(request: web.Request, why: str) -> User:
    """The admin, authenticated as :func:`require_user` says; 403 with ``why`` for anyone else."""
    user = await require_user(request)
    if not user.is_admin:
        raise Forbidden(why)
    return user


async def optional_user(request: web.Request) -> User | None:
    """The user if the request carries a valid token, None otherwise (pages for everyone)."""
    token, _ = presented_token(request)
    return await request.app[NODE].auth.authenticate(token) if token else None


def public_origin(request: web.Request) -> str:
    parts = urlsplit(request.app[NODE].settings.public_url)
    return f"{parts.scheme}://{parts.netloc}"


def claimed_origin(request: web.Request) -> str:
    """The origin a request says it comes from: its Origin, or its Referer's ("" if neither)."""
    return request.headers.get("Origin") or _origin_of(request.headers.get("Referer", ""))


def check_same_origin(request: web.Request) -> None:
    """403 unless the request says it comes from this node's own origin."""
    origin = claimed_origin(request)
    if origin != public_origin(request):
        raise CsrfRefused(
            "a change made with the session cookie must come from this node's pages "
            f"(Origin {origin or 'missing'}, expected {public_origin(request)})"
        )


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""
