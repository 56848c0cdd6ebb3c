"""``GET /`` (what this node is) and ``GET /health`` (whether it can work right now)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from node import __version__
from node.auth.local import User
from node.errors import NodeError
from node.http.appkeys import NODE
from node.http.auth import optional_user
from node.http.errors import error_response
from node.http.limits import usage_json
from node.http.openapi import operation
from node.http.schemas import ERROR, answer, ref
from node.sync.connection import server_version

HEALTH_TIMEOUT_S = 3.0
HEALTH_FRESH_S = 0.5  # a report this recent answers /health and / without asking again
NAME = "artdag-node"


async def _timed(check: Any) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    result = await asyncio.wait_for(check, HEALTH_TIMEOUT_S)
    return result, round((time.perf_counter() - started) * 1000, 2)


async def redis_health(app: web.Application) -> dict[str, Any]:
    """Whether Redis answers a command, with its version and round-trip time."""
    try:
        version, latency_ms = await _timed(server_version(app[NODE].redis_probe))
    except (NodeError, TimeoutError) as exc:
        return {"healthy": False, "error": _describe(exc, "Redis")}
    return {"healthy": True, "version": version, "latency_ms": latency_ms}


async def ipfs_health(app: web.Application) -> dict[str, Any]:
    """Whether the IPFS daemon answers, with its peer id, version and round-trip time."""
    try:
        peer, latency_ms = await _timed(app[NODE].ipfs.id())
        version = await asyncio.wait_for(app[NODE].ipfs.version(), HEALTH_TIMEOUT_S)
    except (NodeError, TimeoutError) as exc:
        return {"healthy": False, "error": _describe(exc, "IPFS daemon")}
    return {
        "healthy": True,
        "peer_id": peer.get("ID"),
        "agent": peer.get("AgentVersion"),
        "version": version.get("Version"),
        "latency_ms": latency_ms,
    }


def _restoring(app: web.Application) -> dict[str, Any]:
    """While the node restores what an emptied Redis lost, Redis counts as not healthy."""
    watch = app[NODE].redis_watch
    if watch.restoring_since is None:
        return {}
    since_s = time.time() - watch.restoring_since
    why_not_yet = f"; not done yet: {watch.last_error}" if watch.last_error else ""
    return {
        "healthy": False,
        "restoring": True,
        "error": f"Redis was emptied {since_s:.0f} s ago; restoring this node's last published state "
        f"and revocations{why_not_yet}",
    }


def _describe(exc: BaseException, what: str) -> str:
    if isinstance(exc, NodeError):
        return exc.message
    return f"{what} did not answer within {HEALTH_TIMEOUT_S:.0f} s"


class HealthReports:
    """One check of Redis and IPFS at a time, its report reused for HEALTH_FRESH_S: a crowd of
    probes (a load balancer, a dashboard, a farm's monitor) costs the daemons one round trip,
    and never takes the connections requests and runs need."""

    def __init__(self) -> None:
        self._report: dict[str, dict[str, Any]] | None = None
        self._checked_at = 0.0
        self._pending: asyncio.Task[dict[str, dict[str, Any]]] | None = None

    async def get(self, app: web.Application) -> dict[str, dict[str, Any]]:
        """The latest report, checked again if it is older than HEALTH_FRESH_S."""
        if self._report is not None and time.monotonic() - self._checked_at < HEALTH_FRESH_S:
            return self._report
        if self._pending is None or self._pending.done():
            self._pending = asyncio.create_task(self._check(app), name="health-check")
        return await asyncio.shield(self._pending)  # one waiter leaving does not stop the check

    async def _check(self, app: web.Application) -> dict[str, dict[str, Any]]:
        report = await _dependencies(app)
        self._report, self._checked_at = report, time.monotonic()
        return report


HEALTH = web.AppKey("health", HealthReports)


async def dependencies(app: web.Application) -> dict[str, dict[str, Any]]:
    """Health of Redis and IPFS (see ``HealthReports``), with any embedded daemon's death."""
    return await app[HEALTH].get(app)


async def _dependencies(app: web.Application) -> dict[str, dict[str, Any]]:
    """Health of Redis and IPFS, checked concurrently, with any embedded daemon's death."""
    redis_report, ipfs_report = await asyncio.gather(redis_health(app), ipfs_health(app))
    report = {"redis": {**redis_report, **_restoring(app)}, "ipfs": ipfs_report}
    services = app[NODE].services
    for role, problem in (services.problems() if services else {}).items():
        report[role]["daemon"] = problem
    return report


@operation(
    "What this node is: name, version, node id, Redis and IPFS health",
    "node",
    {200: answer("The node", ref("Info"))},
)
async def index(request: web.Request) -> web.Response:
    """Server info: name, version, node id, who is asking (null: not logged in), and the state
    of Redis and IPFS."""
    app = request.app
    report = await dependencies(app)
    try:
        user = await optional_user(request)
    except NodeError:  # Redis or the token's L2 down: the page still says what the node is
        user = None
    return web.json_response(
        {
            "name": NAME,
            "version": __version__,
            "node_id": app[NODE].identity.node_id,
            "public_url": app[NODE].settings.public_url,
            "user": user.name if user else None,
            "usage": await _usage(request, user),
            **report,
        }
    )


async def _usage(request: web.Request, user: User | None) -> dict[str, Any] | None:
    """What the user stores and runs against their limits; None when not logged in or when
    Redis cannot say (the page still says what the node is)."""
    try:
        return await usage_json(request, user) if user is not None else None
    except NodeError:
        return None


@operation(
    "Whether the node can work now",
    "node",
    {200: answer("Redis and IPFS answer", ref("Health")), 503: answer("Something is down (named)", ERROR)},
)
async def health(request: web.Request) -> web.Response:
    """200 when Redis and IPFS both answer; 503 in the error shape naming what is down."""
    report = await dependencies(request.app)
    down = [name for name, entry in report.items() if not entry["healthy"]]
    if not down:
        return web.json_response({"status": "ok", "checks": report})
    message = "; ".join(f"{name}: {report[name]['error']}" for name in down)
    return error_response(503, "unhealthy", message, {"checks": report}, headers={"Retry-After": "5"})
