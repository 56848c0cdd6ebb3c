"""The node's metrics over HTTP: ``GET /metrics`` (Prometheus text format) and the middleware
that counts and times every request by its route template.

A route is labelled by its template (``/runs/{run_id}``), never by the path a client sent, and
a request no route matched by one fixed label, so a crawler cannot grow the node's series. Who
may read the metrics is ``ARTDAG_METRICS``: the admin by default (they say what the node works
on and how much), everyone with ``public`` (a scraper on a trusted network).
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from node.http.appkeys import NODE
from node.http.auth import require_admin
from node.http.openapi import operation
from node.metrics import CONTENT_TYPE, UNMATCHED_ROUTE

# Any other method (a client may send any token) is labelled "other": bounded series.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
CLIENT_GONE = "499"  # the status label of a request whose client left first (nginx's convention)


def route_label(request: web.Request) -> str:
    """The template of the route that matched ``request``; UNMATCHED_ROUTE if none did."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED_ROUTE


@web.middleware
async def measured(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count and time each request by route, method and status (outermost: the status is the
    one the error middleware answered)."""
    started = time.perf_counter()
    status = "500"
    try:
        response = await handler(request)
        status = str(response.status)
        return response
    except web.HTTPException as exc:  # a redirect, passed through by the error middleware
        status = str(exc.status)
        raise
    except asyncio.CancelledError:
        status = CLIENT_GONE
        raise
    finally:
        metrics = request.app[NODE].metrics
        route, method = route_label(request), request.method if request.method in METHODS else "other"
        metrics.http_requests.labels(route, method, status).inc()
        metrics.http_duration.labels(route, method).observe(time.perf_counter() - started)


@operation(
    "The node's metrics in the Prometheus text format (version 0.0.4)",
    "node",
    {
        200: {
            "description": 'Every metric of this node (docs/operations.md "Metrics" lists them)',
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
    errors=(403,),
    auth=True,
    description="The admin's by default; `ARTDAG_METRICS=public` serves them to anyone.",
)
async def metrics(request: web.Request) -> web.Response:
    """``GET /metrics``: steps, workers, Redis and IPFS latency, HTTP traffic, federation."""
    node = request.app[NODE]
    if node.settings.metrics != "public":
        await require_admin(
            request, "the metrics are the admin's (ARTDAG_METRICS=public serves them to anyone)"
        )
    return web.Response(body=node.metrics.render(), headers={"Content-Type": CONTENT_TYPE})
