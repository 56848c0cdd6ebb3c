"""Tokens issued by L2 servers, verified with their issuer (the seeds' "Authentication").

A token is a JWT issued by an L2; the node reads its claims without checking its signature (it
holds no L2 secret) only to learn who to ask: ``iss`` must be one of ``ARTDAG_L2_TRUSTED``. It
then asks that L2 (the contract, also in docs/security.md "The L2 contract"):

    POST {issuer}/auth/verify   {"token": TOKEN, "scope": ARTDAG_PUBLIC_URL}
    200 {"valid": true, "username": "alice", "actor": "https://l2.example/users/alice",
         "scope": ARTDAG_PUBLIC_URL, "expires_at": 1795086400}
    200 {"valid": false, "reason": "revoked" | "expired" | "wrong_scope" | "unknown",
         "username": "alice", "actor": ..., "scope": ...}   (for a token it did issue)

Anything else (an error status, a malformed answer, no answer within ``timeout_s``) is
:class:`L2Unavailable`: the request is refused with 503, never let through. The user is
``@username@issuer-host``, and the actor's host must be the issuer's. A "valid" answer is reused
for at most ``ttl_s``; revocation is checked before that cache, so it takes effect at once.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import jwt
from cachetools import TTLCache

from node.auth.errors import L2Unavailable
from node.sync.keys import USER_PATTERN

log = logging.getLogger(__name__)

_USERNAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_USER = re.compile(USER_PATTERN)
CACHE_SIZE = 10_000


@dataclass(frozen=True)
class Verdict:
    """What an issuer said of a token: who it names (if it issued it) and whether it is valid."""

    user: str  # @username@issuer-host; empty if the issuer does not know the token
    valid: bool
    reason: str = ""
    expires_at: float | None = None
    for_this_node: bool = False  # issued with this node's public URL as its scope


def token_hash(token: str) -> str:
    """The SHA-256 hex of a token: what the node stores instead of the token."""
    return hashlib.sha256(token.encode()).hexdigest()


def issuer_of(token: str) -> str:
    """The ``iss`` claim of a JWT, read without checking its signature; "" if there is none."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return ""
    issuer = claims.get("iss") if isinstance(claims, dict) else None
    return issuer.rstrip("/") if isinstance(issuer, str) else ""


class L2Verifier:
    """Asks a token's issuer about it, for the L2 servers this node trusts."""

    def __init__(
        self,
        *,
        trusted: tuple[str, ...],
        scope: str,
        session: aiohttp.ClientSession,
        ttl_s: float,
        timeout_s: float,
    ) -> None:
        self.trusted = {url.rstrip("/") for url in trusted}
        self._scope = scope
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._valid: TTLCache[str, Verdict] = TTLCache(maxsize=CACHE_SIZE, ttl=ttl_s)

    async def verify(self, token: str, *, cached: bool = True) -> Verdict | None:
        """The issuer's verdict; None for a token that names no trusted issuer (or names one
        it was not issued by). L2Unavailable if the issuer cannot be asked."""
        issuer = issuer_of(token)
        if issuer not in self.trusted:
            return None
        key = token_hash(token)
        found = self._valid.get(key) if cached else None
        if found is not None and (found.expires_at is None or found.expires_at > time.time()):
            return found
        verdict = _verdict(issuer, self._scope, await self._ask(issuer, token))
        if verdict.valid:
            self._valid[key] = verdict
        return verdict

    @property
    def scope(self) -> str:
        return self._scope

    def forget(self, token: str) -> None:
        """Drop a cached answer (the token was revoked here)."""
        self._valid.pop(token_hash(token), None)

    async def _ask(self, issuer: str, token: str) -> dict[str, Any]:
        url = f"{issuer}/auth/verify"
        try:
            async with self._session.post(
                url, json={"token": token, "scope": self._scope}, timeout=self._timeout
            ) as response:
                if response.status != 200:
                    raise L2Unavailable(f"L2 {issuer} answered {response.status} to a token check", l2=issuer)
                answer = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError, RecursionError) as exc:
            raise L2Unavailable(
                f"L2 {issuer} could not be asked about a token ({exc or type(exc).__name__})", l2=issuer
            ) from exc
        if not isinstance(answer, dict) or not isinstance(answer.get("valid"), bool):
            raise L2Unavailable(f"L2 {issuer} sent a malformed token check answer", l2=issuer)
        return answer


def _verdict(issuer: str, scope: str, answer: dict[str, Any]) -> Verdict:
    """The answer checked: a user named ``@name@host`` whose actor lives on the issuer's host,
    and a token for this node."""
    host = urlsplit(issuer).netloc
    username, actor = answer.get("username"), answer.get("actor")
    if not isinstance(username, str) or not _USERNAME.fullmatch(username):
        return Verdict("", valid=False, reason=str(answer.get("reason") or "unknown"))
    user = f"@{username}@{host}"
    if not isinstance(actor, str) or _host_of(actor) != host or not _USER.fullmatch(user):
        return Verdict(user, valid=False, reason="actor_domain")
    for_this_node = answer.get("scope") == scope  # the L2 checks it; so does this node
    if answer["valid"] and not for_this_node:
        return Verdict(user, valid=False, reason="wrong_scope")
    expires = answer.get("expires_at")
    return Verdict(
        user,
        valid=bool(answer["valid"]),
        reason=str(answer.get("reason") or ""),
        expires_at=float(expires) if isinstance(expires, (int, float)) else None,
        for_this_node=for_this_node,
    )


def _host_of(url: str) -> str:
    try:
        return urlsplit(url).netloc
    except ValueError:  # an L2's malformed actor URL: no host matches it
        return ""
