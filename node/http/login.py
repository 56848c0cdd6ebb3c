"""Logging in through an L2, revoking tokens, logging out (the seeds' ``/auth`` routes).

There are no login or register pages: users log in at their L2, which sends them to
``GET /auth?auth_token=...``. The node checks the token with its issuer, keeps it in an
HttpOnly, SameSite=Lax cookie (Secure when the public URL is https) and redirects, so the
token leaves the address bar and the history.
"""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from node.auth.errors import AuthRequired
from node.auth.l2 import issuer_of, token_hash
from node.auth.sessions import SESSION_FOR_S, is_session_token
from node.errors import Forbidden, InvalidInput
from node.http.appkeys import NODE
from node.http.auth import SESSION_COOKIE, claimed_origin, presented_token, public_origin
from node.http.openapi import operation
from node.http.runs import read_json
from node.http.schemas import answer, json_body, query, ref
from node.sync.keys import USER_PATTERN

SESSION_MAX_S = 30 * 86400
TOKEN_MAX = 8192
TOKEN_SCHEMA = {"type": "string", "minLength": 1, "maxLength": TOKEN_MAX}


def _redirect_home(request: web.Request) -> web.Response:
    headers = {"Location": "/", "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    return web.Response(status=302, headers=headers)


@operation(
    "Log in with a token from your L2: sets the session cookie, then redirects home",
    "auth",
    {302: {"description": "Logged in: the cookie is set and the browser goes to /"}},
    errors=(400, 401),
    query=(query("auth_token", TOKEN_SCHEMA, "the token your L2 issued for this node", required=True),),
)
async def login(request: web.Request) -> web.Response:
    """``GET /auth?auth_token=TOKEN``: check the token with its L2 now (never a cached answer),
    keep it in the session cookie, redirect to ``/``. The admin token is never kept: the
    cookie holds a session started with it (``node.auth.sessions``), which ``/logout`` ends."""
    token = request.query.get("auth_token", "").strip()
    if not token:
        raise InvalidInput(
            "auth_token is required: log in at your L2, which sends you here", field="auth_token"
        )
    if len(token) > TOKEN_MAX:
        raise InvalidInput(f"auth_token is longer than {TOKEN_MAX} characters", field="auth_token")
    auth = request.app[NODE].auth
    user, why_not = await auth.check(token, fresh=True)
    if user is None:
        raise AuthRequired(f"not logged in: {why_not}")
    if user.is_admin:  # the browser gets a session of its own, never the admin token
        token, max_age_s = await auth.sessions.start(), SESSION_FOR_S
    else:
        max_age_s = SESSION_MAX_S
    response = _redirect_home(request)
    secure = urlsplit(request.app[NODE].settings.public_url).scheme == "https"
    response.set_cookie(
        SESSION_COOKIE, token, max_age=max_age_s, path="/", httponly=True, samesite="Lax", secure=secure
    )
    return response


@operation(
    "Log out: forget this browser's session (and revoke its token here)",
    "auth",
    {302: {"description": "Logged out: the cookie is cleared and the browser goes to /"}},
)
async def logout(request: web.Request) -> web.Response:
    """``GET /logout``: clears the session cookie and ends an admin session; from this node's
    own pages (Origin or Referer), also revokes an L2 token here. A link on another site only
    logs the browser out: it cannot revoke a user's token across the cluster."""
    token, from_cookie = presented_token(request)
    auth = request.app[NODE].auth
    same_origin = claimed_origin(request) == public_origin(request)
    if from_cookie and is_session_token(token):
        await auth.sessions.end(token)  # from anywhere: ending one's own session harms nobody
    elif from_cookie and auth.revocations is not None and issuer_of(token) and same_origin:
        await auth.revocations.revoke(token_hash(token))
    response = _redirect_home(request)
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


@operation(
    "Revoke one token (holding it is the proof)",
    "auth",
    {200: answer("Revoked on this node (and every node sharing its Redis)", ref("Revoked"))},
    errors=(400,),
    body=json_body(ref("RevokeRequest")),
)
async def revoke(request: web.Request) -> web.Response:
    """``POST /auth/revoke {"token": TOKEN}``: no request may use the token again (30 days);
    a session token (local mode's browser sessions) ends the session."""
    token = _token_field(await read_json(request), "token")
    auth = request.app[NODE].auth
    if is_session_token(token):
        if not await auth.sessions.end(token):
            raise InvalidInput("not a live session of this node (it ended already?)", field="token")
        return web.json_response({"revoked": 1})
    if auth.revocations is None or auth.verifier is None:
        raise InvalidInput("no L2 is trusted by this node (local mode)", field="token")
    verdict = await auth.verifier.verify(token, cached=False)  # only what an L2 issued is kept
    if verdict is None or not verdict.user:
        raise InvalidInput("not a token an L2 this node trusts issued", field="token")
    await auth.revocations.revoke(token_hash(token), verdict.user)
    auth.verifier.forget(token)
    return web.json_response({"revoked": 1})


@operation(
    "Revoke all of a user's tokens (called by L2 on logout)",
    "auth",
    {200: answer("How many of the user's tokens this node had seen, now revoked", ref("Revoked"))},
    errors=(400, 403),
    body=json_body(ref("RevokeUserRequest")),
)
async def revoke_user(request: web.Request) -> web.Response:
    """``POST /auth/revoke-user {"user": "@alice@l2.example", "token": TOKEN}``: the caller
    proves it speaks for the user with a token the user's L2 confirms it issued to that user
    (revoked or not: L2 revokes first, then calls here); then every token of the user this node
    has seen is revoked."""
    body = await read_json(request)
    user, token = _user_field(body), _token_field(body, "token")
    auth = request.app[NODE].auth
    if auth.verifier is None or auth.revocations is None:
        raise Forbidden("no L2 is trusted by this node (local mode)")
    verdict = await auth.verifier.verify(token, cached=False)
    if verdict is None or verdict.user != user or not verdict.for_this_node:
        raise Forbidden(f"the token does not show that the caller speaks for {user} on this node")
    revoked = await auth.revocations.revoke_user(user)
    await auth.revocations.revoke(token_hash(token))
    auth.verifier.forget(token)
    return web.json_response({"revoked": revoked, "user": user, "at": int(time.time())})


def _token_field(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip() or len(value) > TOKEN_MAX:
        raise InvalidInput(f"{name} must be a token string", field=name)
    return value.strip()


def _user_field(body: dict[str, Any]) -> str:
    value = body.get("user")
    if not isinstance(value, str) or not re.fullmatch(USER_PATTERN, value):
        raise InvalidInput("user must be @name@l2-host", field="user")
    return value
