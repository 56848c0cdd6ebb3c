"""Browser sessions of the admin (local mode): logging in with the admin token gives the
browser a session token of its own, never the admin token itself, so ``/logout`` can end it.

A session is a random token (``artdag-session.`` and 32 random bytes); Redis keeps only its
SHA-256, with the node that made it and an expiry (``SESSION_FOR_S``). It is accepted by that
node alone, while the key lives: logging out, revoking it, or an emptied Redis ends it
(failing closed: the browser logs in again).
"""

from __future__ import annotations

import hashlib
import secrets

import redis.asyncio as aioredis

from node.sync.connection import redis_errors
from node.sync.keys import Keys

SESSION_PREFIX = "artdag-session."
SESSION_FOR_S = 7 * 86400


def is_session_token(token: str) -> bool:
    """Whether ``token`` has the form of a session token (not whether it is live)."""
    return token.startswith(SESSION_PREFIX)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions:
    """Admin sessions of one node, in Redis."""

    def __init__(self, client: aioredis.Redis, keys: Keys, node_id: str) -> None:
        self._redis = client
        self._keys = keys
        self._node_id = node_id

    async def start(self) -> str:
        """A new session token, live for SESSION_FOR_S."""
        token = SESSION_PREFIX + secrets.token_urlsafe(32)
        with redis_errors():
            await self._redis.set(self._keys.session(_hash(token)), self._node_id, ex=SESSION_FOR_S)
        return token

    async def is_live(self, token: str) -> bool:
        """Whether ``token`` is a session this node started that has not ended."""
        if not is_session_token(token) or not token.isascii():
            return False
        with redis_errors():
            return await self._redis.get(self._keys.session(_hash(token))) == self._node_id

    async def end(self, token: str) -> bool:
        """End the session; whether it was live."""
        if not await self.is_live(token):
            return False
        with redis_errors():
            return bool(await self._redis.delete(self._keys.session(_hash(token))))
