"""The application factory: routes and middleware around an open node (``node.assembly``)."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from node.assembly import STATE_NOTICE, Node
from node.errors import NodeError
from node.http import (
    attestation,
    cache,
    catalog,
    cluster,
    docs,
    health,
    login,
    metrics,
    recipes,
    reexecution,
    runs,
    state,
    storage,
)
from node.http.appkeys import NODE, PROBE_SLOTS
from node.http.errors import error_middleware
from node.http.hot import HOT, HotReads
from node.http.limits import add_rate_limiter
from node.http.params import path_parameter
from node.http.ui import cluster_page, home, run_pages
from node.http.ui import routes as ui_routes
from node.http.ui.templating import negotiated

log = logging.getLogger(__name__)


def create_app(node: Node) -> web.Application:
    """The node's HTTP application: routes and middleware around an open ``node``
    (``Node.open``), which outlives it."""
    app = web.Application(
        middlewares=[metrics.measured, error_middleware, state_changes], client_max_size=1024**2
    )
    app[NODE] = node
    app[PROBE_SLOTS] = asyncio.Semaphore(cache.PROBES_AT_ONCE)
    app[HOT] = HotReads()
    add_rate_limiter(app)
    app[health.HEALTH] = health.HealthReports()
    # Content deleted: no ref resolves to it from memory. The node may outlive the app.
    stop_hearing = node.gone.on_gone(app[HOT].forget_content)

    async def stop(_: web.Application) -> None:
        stop_hearing()

    app.on_cleanup.append(stop)
    app.router.add_get("/", negotiated(health.index, home.home), name="index")
    app.router.add_get("/health", health.health, name="health")
    app.router.add_get("/metrics", metrics.metrics, name="metrics")
    app.router.add_get("/cluster", negotiated(cluster.cluster, cluster_page.cluster_page), name="cluster")
    ref = path_parameter("ref", "upload", "import")
    app.router.add_post("/cache/upload", cache.upload, name="cache-upload")
    app.router.add_get("/cache", cache.listing, name="cache-list")
    app.router.add_get(f"/cache/{ref}", cache.download, name="cache-get")
    app.router.add_get("/cache/{ref}/probe", cache.probe, name="cache-probe")
    app.router.add_get("/cache/{ref}/thumbnail", cache.thumbnail, name="cache-thumbnail")
    app.router.add_delete(f"/cache/{ref}", cache.remove, name="cache-delete")
    app.router.add_post("/cache/import", cache.import_file, name="cache-imports")
    _add_run_routes(app)
    app.router.add_get("/auth", login.login, name="auth")
    app.router.add_post("/auth/revoke", login.revoke, name="auth-revoke")
    app.router.add_post("/auth/revoke-user", login.revoke_user, name="auth-revoke-user")
    app.router.add_get("/logout", login.logout, name="logout")
    app.router.add_get("/identity", state.identity, name="identity")
    app.router.add_get("/state", state.state, name="state")
    app.router.add_get("/peers", state.peers, name="peers")
    app.router.add_get("/storage", storage.storage, name="storage")
    app.router.add_post("/storage/gc", storage.collect, name="storage-gc")
    catalog.add_routes(app)
    reexecution.add_routes(app)
    recipes.add_routes(app)
    docs.add_routes(app)
    ui_routes.add_routes(app)
    return app


def _add_run_routes(app: web.Application) -> None:
    app.router.add_post("/runs", runs.create, name="runs-create")
    app.router.add_post("/runs/batch", runs.create_batch, name="runs-batch")
    app.router.add_get("/runs", negotiated(runs.listing, run_pages.runs_page), name="runs-list")
    run_id = path_parameter("run_id", "batch")
    app.router.add_get(f"/runs/{run_id}", runs.detail, name="run")
    app.router.add_delete(f"/runs/{run_id}", runs.delete, name="run-delete")
    app.router.add_post(f"/runs/{run_id}/cancel", runs.cancel, name="run-cancel")
    app.router.add_post(f"/runs/{run_id}/retry", runs.retry, name="run-retry")
    app.router.add_get(f"/runs/{run_id}/events", runs.events, name="run-events")
    app.router.add_get(f"/runs/{run_id}/provenance", runs.provenance, name="run-provenance")
    app.router.add_get(f"/runs/{run_id}/attestation", attestation.attestation, name="run-attestation")


@web.middleware
async def state_changes(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A request that changed something (a write that succeeded) marks the node's state, and
    that of every node sharing its Redis, for publishing."""
    response = await handler(request)
    if request.method not in ("GET", "HEAD", "OPTIONS") and response.status < 400:
        try:
            await request.app[NODE].notices.publish(STATE_NOTICE)
        except NodeError as exc:  # published with the next change, or at the next start
            log.warning("state change not announced (%s)", exc.message)
    return response
