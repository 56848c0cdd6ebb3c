"""Local-mode auth: with no L2 configured, one admin token created on first start.

The token lives 0600 in the data directory (``admin_token``) and is compared in constant time.
The L2 flow (issue: auth through L2) extends :class:`Authenticator` with verified user tokens.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path

from node.private_files import create_private_file

log = logging.getLogger(__name__)

TOKEN_FILE = "admin_token"  # noqa: S105 - a file name, not a secret


@dataclass(frozen=True)
class User:
    """Who a request acts for."""

    name: str
    is_admin: bool = False


ADMIN = User("admin", is_admin=True)


class Authenticator:
    """Turns a bearer token into a :class:`User`, or None when the token is not valid."""

    def __init__(self, admin_token: str) -> None:
        self._admin_token = admin_token.encode()

    async def authenticate(self, token: str) -> User | None:
        if not token.isascii():  # tokens are ASCII; headers may carry undecodable bytes
            return None
        if hmac.compare_digest(token.encode(), self._admin_token):
            return ADMIN
        return None


def load_or_create_admin_token(data_dir: Path) -> str:
    """Read the admin token, creating it (0600, never overwritten) on first start. Blocking."""
    path = data_dir / TOKEN_FILE
    token = secrets.token_urlsafe(32)
    if create_private_file(path, f"{token}\n".encode()):
        log.warning(
            'local mode: admin token created in %s (0600); use it as -H "Authorization: Bearer $(cat %s)"',
            path,
            path,
        )
        return token
    return path.read_text(encoding="utf-8").strip()
