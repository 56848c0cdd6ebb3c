"""The per-user limits as requests meet them: the write rate (``ARTDAG_RATE_LIMIT``), the
stored-bytes quota (``ARTDAG_QUOTA_BYTES``) and unfinished runs (``ARTDAG_MAX_RUNS_PER_USER``).
The admin is exempt from all three. Every count is in Redis, so the nodes sharing it count the
same requests, bytes and runs; Redis down is a 503 with ``Retry-After``, as everywhere."""

from __future__ import annotations

import math
from typing import Any

from aiohttp import web

from node.auth.local import User
from node.errors import TooManyRequests
from node.executor.admission import NO_LIMITS, OwnerLimits
from node.http.appkeys import NODE
from node.sync.rate import RateLimiter

RATE = web.AppKey("rate", RateLimiter)  # present only when ARTDAG_RATE_LIMIT is set


class RateLimited(TooManyRequests):
    code = "rate_limited"


def add_rate_limiter(app: web.Application) -> None:
    """Count users' writes, if the settings limit them."""
    node = app[NODE]
    rate = node.settings.rate_limit
    if rate is not None:
        app[RATE] = RateLimiter(node.redis, node.keys, rate.count, rate.period_s)


async def check_rate(request: web.Request, user: User) -> None:
    """Count a write of ``user``'s; RateLimited (429, ``Retry-After``: whole seconds until one
    would be let through) past the rate."""
    limiter, rate = request.app.get(RATE), request.app[NODE].settings.rate_limit
    if limiter is None or rate is None or user.is_admin:
        return
    wait_s = await limiter.admit(user.name)
    if wait_s > 0:
        retry_after = max(1, math.ceil(wait_s))
        raise RateLimited(
            f"you sent more than {rate.text} writes (ARTDAG_RATE_LIMIT): try again in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
            retry_after=retry_after,
        )


def quota_of(request: web.Request, user: User) -> int:
    """The bytes ``user`` may store in all; 0: no quota (the admin, or none set)."""
    return limits_of(request, user).quota


def limits_of(request: web.Request, user: User) -> OwnerLimits:
    """What ``user``'s runs are admitted against (``node.executor.admission``)."""
    if user.is_admin:
        return NO_LIMITS
    settings = request.app[NODE].settings
    return OwnerLimits(max_runs=settings.max_runs_per_user, quota=settings.quota_bytes)


async def usage_json(request: web.Request, user: User) -> dict[str, Any]:
    """What ``user`` stores and runs, and their limits (null: none): ``GET /``'s ``usage``."""
    usage = request.app[NODE].store.index.usage
    limits = limits_of(request, user)
    rate = request.app[NODE].settings.rate_limit
    return {
        "stored_bytes": await usage.stored_bytes(user.name),
        "quota_bytes": limits.quota or None,
        "unfinished_runs": await usage.unfinished_runs(user.name),
        "max_runs": limits.max_runs or None,
        "rate_limit": rate.text if rate is not None and not user.is_admin else None,
    }
