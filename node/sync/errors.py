"""Errors of the Redis index and cooperation layer."""

from node.errors import InvalidInput, Unavailable


class RedisUnavailable(Unavailable):
    code = "redis_unavailable"


class InvalidId(InvalidInput):
    """A content id, cache id or run id that is not in its canonical form."""

    code = "invalid_id"
