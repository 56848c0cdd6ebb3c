"""Local-mode auth: with no L2 configured, one admin token created on first start.

The token lives 0600 in the data directory (``admin_token``) and is compared in constant time.
It stays valid when L2 servers are configured (the operator's key); users then come with tokens
their L2 issued (``node.auth.l2``), checked against revocations (``node.auth.revocation``).
"""

from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path

from node.auth.l2 import L2Verifier, issuer_of, token_hash
from node.auth.revocation import Revocations
from node.auth.sessions import Sessions, is_session_token
from node.private_files import create_private_file

log = logging.getLogger(__name__)

TOKEN_FILE = "admin_token"  # noqa: S105 - a file name, not a secret


@dataclass(frozen=True)
class User:
    """Who a request acts for."""

    name: str
    is_admin: bool = False

    def may_change(self, owner: str) -> bool:
        """Whether this user may change what ``owner`` owns: its owner, or an admin."""
        return self.is_admin or self.name == owner


ADMIN = User("admin", is_admin=True)


class Authenticator:
    """Turns a token into a :class:`User`, or None when the token is not valid: the admin token
    always, and a live session started with it (``node.auth.sessions``); with L2 servers
    configured, tokens they issued for this node, unless revoked."""

    def __init__(
        self,
        admin_token: str,
        *,
        sessions: Sessions,
        verifier: L2Verifier | None = None,
        revocations: Revocations | None = None,
    ) -> None:
        self._admin_token = admin_token.encode()
        self.sessions = sessions
        self.verifier = verifier
        self.revocations = revocations

    async def authenticate(self, token: str) -> User | None:
        """The token's user. L2Unavailable (503) when its issuer cannot be asked."""
        return (await self.check(token))[0]

    async def check(self, token: str, *, fresh: bool = False) -> tuple[User | None, str]:
        """The token's user, or None and why not; ``fresh`` asks the issuer even if it said
        "valid" moments ago (a login)."""
        if not token.isascii():  # tokens are ASCII; headers may carry undecodable bytes
            return None, "not a token"
        if hmac.compare_digest(token.encode(), self._admin_token):
            return ADMIN, ""
        if is_session_token(token):
            if await self.sessions.is_live(token):
                return ADMIN, ""
            return None, "the session ended (logged out, revoked or expired): log in again"
        if self.verifier is None or self.revocations is None:
            return None, "not this node's admin token, and no L2 is trusted (local mode)"
        return await self._check_with_l2(token, self.verifier, self.revocations, fresh)

    async def _check_with_l2(
        self, token: str, verifier: L2Verifier, revocations: Revocations, fresh: bool
    ) -> tuple[User | None, str]:
        hashed = token_hash(token)
        if await revocations.is_revoked(hashed):  # before any cached answer: immediate
            return None, "the token was revoked"
        verdict = await verifier.verify(token, cached=not fresh)
        if verdict is None:
            return None, f"the token's issuer ({issuer_of(token) or 'none'}) is not an L2 this node trusts"
        if not verdict.valid:
            return None, f"the token's L2 refused it: {verdict.reason or 'invalid'}"
        await revocations.record(verdict.user, hashed)
        return User(verdict.user), ""


def load_or_create_admin_token(data_dir: Path) -> str:
    """Read the admin token, creating it (0600, never overwritten) on first start. Blocking."""
    path = data_dir / TOKEN_FILE
    token = secrets.token_urlsafe(32)
    if create_private_file(path, f"{token}\n".encode()):
        log.warning(
            'local mode: admin token created in %s (0600); use it as -H "Authorization: Bearer $(cat %s)", '
            "or log a browser in at /auth?auth_token=$(cat %s)",
            path,
            path,
            path,
        )
        return token
    return path.read_text(encoding="utf-8").strip()
