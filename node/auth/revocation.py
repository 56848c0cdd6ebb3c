"""Revoked tokens, kept in Redis so every node sharing it refuses them at once (the seeds'
"Token revocation"): a token's SHA-256 under ``revoked:`` for 30 days, and the hashes of each
user's tokens this node has seen, so that all of them can be revoked together."""

from __future__ import annotations

import redis.asyncio as aioredis

from node.sync.connection import redis_errors
from node.sync.keys import Keys

REVOKED_FOR_S = 30 * 86400


class Revocations:
    """Which tokens are revoked, and whose tokens are whose."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self._redis = client
        self._keys = keys

    async def is_revoked(self, token_hash: str) -> bool:
        with redis_errors():
            return bool(await self._redis.exists(self._keys.revoked_token(token_hash)))

    async def record(self, user: str, token_hash: str) -> None:
        """Note that ``user`` authenticated with the token (kept as long as a revocation)."""
        key = self._keys.user_tokens(user)
        with redis_errors():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.sadd(key, token_hash)
                pipe.expire(key, REVOKED_FOR_S)
                await pipe.execute()

    async def revoke(self, token_hash: str, user: str = "") -> None:
        with redis_errors():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(self._keys.revoked_token(token_hash), "1", ex=REVOKED_FOR_S)
                if user:
                    pipe.srem(self._keys.user_tokens(user), token_hash)
                await pipe.execute()

    async def revoke_user(self, user: str) -> int:
        """Revoke every token of ``user`` this node has seen; how many."""
        key = self._keys.user_tokens(user)
        with redis_errors():
            hashes = [str(found) for found in await self._redis.smembers(key)]
            async with self._redis.pipeline(transaction=True) as pipe:
                for token_hash in hashes:
                    pipe.set(self._keys.revoked_token(token_hash), "1", ex=REVOKED_FOR_S)
                pipe.delete(key)
                await pipe.execute()
        return len(hashes)
