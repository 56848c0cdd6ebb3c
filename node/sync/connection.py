"""The node's Redis client and the translation of Redis failures into node errors."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, cast

import redis
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from node.metrics import Metrics
from node.sync.errors import RedisUnavailable

CONNECT_TIMEOUT_S = 2.0
COMMAND_TIMEOUT_S = 10.0
POOL_WAIT_S = 10.0  # how long a command waits for a free connection before it is 503
# Replies of a Redis that cannot serve for a while (persistence failing, a failover).
_OUTAGE_REPLIES = frozenset({"MISCONF", "TRYAGAIN", "MASTERDOWN", "LOADING", "CLUSTERDOWN"})
DEFAULT_CONNECTIONS = 64
# Not a failure: redis-py answers it by loading the script (SCRIPT LOAD) and sending it again.
_CLIENT_PROTOCOL = (redis.exceptions.NoScriptError,)


def connect(
    url: str,
    connections: int = DEFAULT_CONNECTIONS,
    *,
    wait_s: float | None = POOL_WAIT_S,
    metrics: Metrics | None = None,
) -> aioredis.Redis:
    """A client on a bounded pool of ``connections``: a command that finds them all busy waits
    for one, up to ``wait_s`` (None: as long as it takes), then fails as RedisUnavailable; each
    answers or fails within a few seconds (no silent long retries). redis-py's default pool
    raises at once instead ("Too many connections"), a 503 storm under load. With ``metrics``,
    every command and pipeline is timed (and counted if it fails)."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=connections,
        timeout=wait_s,
        decode_responses=True,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=COMMAND_TIMEOUT_S,
        health_check_interval=30,
        retry_on_timeout=False,
    )
    if metrics is None:
        return aioredis.Redis.from_pool(pool)
    client = cast(_MeasuredRedis, _MeasuredRedis.from_pool(pool))
    client.metrics = metrics
    return client


class _MeasuredRedis(aioredis.Redis):
    """A client that times its commands: redis-py sends every command, Lua scripts' EVALSHA
    included, through ``execute_command``, and every pipeline through ``execute``."""

    metrics: Metrics

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        with self.metrics.redis_call(str(args[0]).upper(), _CLIENT_PROTOCOL):
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        pipe = _MeasuredPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)
        pipe.metrics = self.metrics
        return pipe


class _MeasuredPipeline(Pipeline):
    """A pipeline timed as one round trip (its commands are only queued one by one)."""

    metrics: Metrics

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        with self.metrics.redis_call("pipeline"):
            return await super().execute(raise_on_error)


@contextlib.contextmanager
def redis_errors() -> Iterator[None]:
    """Turn connection failures and timeouts into :class:`RedisUnavailable` (503)."""
    try:
        yield
    except redis.BusyLoadingError as exc:  # a ConnectionError subclass: catch it first
        raise RedisUnavailable("Redis is still loading its data; try again shortly") from exc
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise RedisUnavailable(f"Redis is unavailable: {exc}") from exc
    except (redis.ReadOnlyError, redis.OutOfMemoryError) as exc:  # a replica, or full: for now
        raise RedisUnavailable(f"Redis cannot take writes now: {exc}") from exc
    except redis.ResponseError as exc:
        if str(exc).split(" ", 1)[0] not in _OUTAGE_REPLIES:
            raise
        raise RedisUnavailable(f"Redis cannot answer now: {exc}") from exc


async def scored_members(client: aioredis.Redis, key: str) -> list[tuple[str, float]]:
    """A sorted set's members with their scores, in order (start-up and publishing work)."""
    with redis_errors():
        found: list[Any] = await client.zrange(key, 0, -1, withscores=True)
    return [(str(member), float(score)) for member, score in found]


async def hashes(client: aioredis.Redis, keys: list[str]) -> list[dict[Any, Any]]:
    """HGETALL of several keys in one round trip, in order (an empty dict: no such key)."""
    with redis_errors():
        async with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(key)
            return list(await pipe.execute())


async def server_version(client: aioredis.Redis) -> str:
    """The Redis server's version; proves the server answers commands."""
    with redis_errors():
        info = await client.info("server")
    return str(info.get("redis_version", "unknown"))
