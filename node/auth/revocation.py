"""Revoked tokens (the seeds' "Token revocation"): refused by every node sharing a Redis at
once, and by this node whatever happens to Redis.

A revocation is a token's SHA-256 and when it expires (30 days on). It is written to the node's
revocation file (``node.auth.revocation_file``, synced) before anything else, so ``/auth/revoke``
answers only once it is durable; then it is kept in memory and in Redis (a sorted set scored by
expiry, shared by the cluster). A hash that Redis says is revoked is learnt into the file too.
Restoring (at start, and when Redis was emptied) puts the file's revocations back into Redis and
takes the others' into the file: nodes sharing a Redis restore the union, each with its expiry.
"""

from __future__ import annotations

import asyncio
import logging
import time

import redis.asyncio as aioredis

from node.auth.revocation_file import RevocationFile, Revoked
from node.errors import NodeError
from node.sync.connection import redis_errors, scored_members
from node.sync.keys import Keys, check_content_id

log = logging.getLogger(__name__)

REVOKED_FOR_S = 30 * 86400


class Revocations:
    """Which tokens are revoked, and whose tokens are whose."""

    def __init__(self, client: aioredis.Redis, keys: Keys, file: RevocationFile) -> None:
        self._redis = client
        self._keys = keys
        self._file = file
        self._known: Revoked = {}  # what the file holds (not expired when read)
        self._shared_count = -1  # how many revocations Redis held when last looked at

    async def load(self) -> None:
        """Read the file (compacting it), then restore into Redis (best effort: a Redis down at
        start is restored into when the node notices it back)."""
        self._known = await asyncio.to_thread(self._file.read)
        await asyncio.to_thread(self._file.rewrite, self._known)
        try:
            await self.restore()
        except NodeError as exc:  # the file already refuses them here
            log.warning("revocations not restored into Redis yet (%s)", exc.message)

    async def is_revoked(self, token_hash: str) -> bool:
        """Revoked here (the file) or anywhere in the cluster (Redis); the latter is learnt."""
        now = time.time()
        if self._known.get(token_hash, 0.0) > now:
            return True
        with redis_errors():
            expires = await self._redis.zscore(self._keys.revocations(), check_content_id(token_hash))
        if expires is None or float(expires) <= now:
            return False
        await self._keep({token_hash: float(expires)})
        return True

    async def record(self, user: str, token_hash: str) -> None:
        """Note that ``user`` authenticated with the token (kept as long as a revocation)."""
        key = self._keys.user_tokens(user)
        with redis_errors():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.sadd(key, token_hash)
                pipe.expire(key, REVOKED_FOR_S)
                await pipe.execute()

    async def revoke(self, token_hash: str, user: str = "") -> None:
        """Revoke one token: durable in the file first, then in Redis for the cluster."""
        revoked = {check_content_id(token_hash): time.time() + REVOKED_FOR_S}
        await self._keep(revoked)
        with redis_errors():
            async with self._redis.pipeline(transaction=True) as pipe:
                self._share(pipe, revoked)
                if user:
                    pipe.srem(self._keys.user_tokens(user), token_hash)
                await pipe.execute()

    async def revoke_user(self, user: str) -> int:
        """Revoke every token of ``user`` this node has seen; how many."""
        key = self._keys.user_tokens(user)
        with redis_errors():
            hashes = [check_content_id(str(found)) for found in await self._redis.smembers(key)]
        expires = time.time() + REVOKED_FOR_S
        revoked = dict.fromkeys(hashes, expires)
        await self._keep(revoked)
        with redis_errors():
            async with self._redis.pipeline(transaction=True) as pipe:
                self._share(pipe, revoked)
                pipe.delete(key)
                await pipe.execute()
        return len(hashes)

    async def restore(self) -> int:
        """Put this node's revocations into Redis (a later expiry there is kept) and take the
        cluster's into the file; how many Redis lacked."""
        key = self._keys.revocations()
        shared = await scored_members(self._redis, key)
        with redis_errors():
            async with self._redis.pipeline(transaction=True) as pipe:
                self._share(pipe, self._known)
                await pipe.execute()
        held = {token_hash for token_hash, _ in shared}
        missing = sum(token_hash not in held for token_hash in self._known)
        await self._learn(shared)
        if missing:
            log.warning("restored %d token revocations into Redis from %s", missing, self._file.path)
        return missing

    async def refresh(self) -> None:
        """Take revocations made elsewhere in the cluster into the file (cheap when none are
        new: one ZCARD), so this node can restore them even if their node is gone."""
        key = self._keys.revocations()
        with redis_errors():
            count = int(await self._redis.zcard(key))
        if count == self._shared_count:
            return
        await self._learn(await scored_members(self._redis, key))
        self._shared_count = count

    async def _learn(self, shared: list[tuple[str, float]]) -> None:
        now = time.time()
        await self._keep(
            {
                token_hash: expires
                for token_hash, expires in shared
                if expires > now and self._known.get(token_hash, 0.0) < expires
            }
        )

    async def _keep(self, revoked: Revoked) -> None:
        """Durable in the file, then in memory (a revocation this node knows is never lost)."""
        if revoked:
            await asyncio.to_thread(self._file.append, revoked)
            for token_hash, expires in revoked.items():
                self._known[token_hash] = max(expires, self._known.get(token_hash, 0.0))

    def _share(self, pipe: aioredis.client.Pipeline, revoked: Revoked) -> None:
        key = self._keys.revocations()
        if revoked:
            pipe.zadd(key, dict(revoked), gt=True)  # an expiry already later there stays
        pipe.zremrangebyscore(key, "-inf", time.time())
