"""The application factory: resources opened in ``cleanup_ctx``, routes, one error middleware."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler

from node.auth.deletion import DeletionRules
from node.auth.l2 import L2Verifier
from node.auth.local import Authenticator, load_or_create_admin_token
from node.auth.publication import PublicationChecker
from node.auth.revocation import Revocations
from node.config import Settings
from node.errors import NodeError
from node.executor.adoption import PeerAdoption
from node.executor.claiming import RedisClaims
from node.executor.planner import tool_versions
from node.executor.pool import WorkerPool
from node.executor.provenance import RecordWriter
from node.executor.recipe_store import RecipeStore
from node.executor.run_manager import RunManager
from node.executor.run_queries import RunQueries
from node.executor.scheduler import Scheduler
from node.federation.peering import DaemonPeering
from node.federation.peers import PeerSync, parse_peers
from node.federation.publisher import IpnsNames, StatePublisher
from node.federation.recovery import recover
from node.federation.refill import refill
from node.http import cache, catalog, docs, health, login, recipes, runs, state
from node.http.appkeys import (
    ACTIVITIES,
    AUTH,
    CONTENT_INDEX,
    CONTENT_STORE,
    DAEMON_PEERING,
    DELETION,
    HTTP_SESSION,
    IDENTITY,
    IPFS,
    IPNS_NAMES,
    KEYS,
    LOCAL_CACHE,
    NOTICES,
    PEER_SYNC,
    PROBE_SLOTS,
    PUBLICATIONS,
    RECIPES,
    RECORD_WRITER,
    REDIS,
    RUN_QUERIES,
    RUNS,
    SCHEDULER,
    SERVICES,
    SETTINGS,
    STATE_PUBLISHER,
    STEP_INDEX,
    THUMBNAILS,
    WORKER_POOL,
)
from node.http.errors import error_middleware
from node.http.hot import HOT, HotReads
from node.http.ui import home, run_pages
from node.http.ui import routes as ui_routes
from node.http.ui.render import negotiated
from node.identity import load_or_create
from node.services import REFILL_MARKER, EmbeddedServices
from node.store.content import ContentStore
from node.store.ipfs import IpfsClient
from node.store.local_cache import LocalCache
from node.store.thumbnail_cache import Thumbnails
from node.sync.activities import Activities
from node.sync.claims import ClaimBoard
from node.sync.connection import connect
from node.sync.index import ContentIndex, StepIndex
from node.sync.keys import Keys
from node.sync.notices import Notices

log = logging.getLogger(__name__)
ADOPT_POLL_S = 2.0
STATE_NOTICE = "state:changed"
PUBLISHED_TTL_S = 10.0  # an L2's answer about what it published is reused this long

SERVICE_WATCH_INTERVAL_S = 2.0
IPFS_READ_BUFSIZE = 1024 * 1024


def create_app(settings: Settings, services: EmbeddedServices | None = None) -> web.Application:
    """Build the node's application. ``settings`` must name reachable Redis and IPFS URLs;
    ``services`` (the embedded daemons, if any) lets ``/health`` report a daemon's death."""
    _required(settings.redis_url, "redis_url")
    _required(settings.ipfs_api, "ipfs_api")
    app = web.Application(middlewares=[error_middleware, state_changes], client_max_size=1024**2)
    app[SETTINGS] = settings
    if services is not None:
        app[SERVICES] = services
        app.cleanup_ctx.append(_watch_services)
    app.cleanup_ctx.extend([_identity, _redis, _auth, _ipfs, _store, _sync, _executor])
    app[PROBE_SLOTS] = asyncio.Semaphore(cache.PROBES_AT_ONCE)
    app[HOT] = HotReads()
    app.router.add_get("/", negotiated(health.index, home.home), name="index")
    app.router.add_get("/health", health.health, name="health")
    app.router.add_post("/cache/upload", cache.upload, name="cache-upload")
    app.router.add_get("/cache", cache.listing, name="cache-list")
    app.router.add_get("/cache/{ref}", cache.download, name="cache-get")
    app.router.add_get("/cache/{ref}/probe", cache.probe, name="cache-probe")
    app.router.add_get("/cache/{ref}/thumbnail", cache.thumbnail, name="cache-thumbnail")
    app.router.add_delete("/cache/{ref}", cache.remove, name="cache-delete")
    app.router.add_post("/cache/import", cache.import_file, name="cache-imports")
    app.router.add_post("/runs", runs.create, name="runs-create")
    app.router.add_get("/runs", negotiated(runs.listing, run_pages.runs_page), name="runs-list")
    app.router.add_get("/runs/{run_id}", runs.detail, name="run")
    app.router.add_delete("/runs/{run_id}", runs.delete, name="run-delete")
    app.router.add_post("/runs/{run_id}/cancel", runs.cancel, name="run-cancel")
    app.router.add_get("/runs/{run_id}/events", runs.events, name="run-events")
    app.router.add_get("/runs/{run_id}/provenance", runs.provenance, name="run-provenance")
    app.router.add_get("/auth", login.login, name="auth")
    app.router.add_post("/auth/revoke", login.revoke, name="auth-revoke")
    app.router.add_post("/auth/revoke-user", login.revoke_user, name="auth-revoke-user")
    app.router.add_get("/logout", login.logout, name="logout")
    app.router.add_get("/identity", state.identity, name="identity")
    app.router.add_get("/state", state.state, name="state")
    app.router.add_get("/peers", state.peers, name="peers")
    app.router.add_get("/activities", catalog.activities, name="activities")
    app.router.add_get("/effects", catalog.effects, name="effects")
    app.router.add_get("/assets", catalog.assets, name="assets")
    app.router.add_get("/provenance/{cid}", catalog.provenance, name="provenance")
    app.router.add_get("/provenance/{cid}/verify", catalog.verify, name="provenance-verify")
    recipes.add_routes(app)
    docs.add_routes(app)
    ui_routes.add_routes(app)
    return app


def _required(url: str | None, name: str) -> str:
    if url is None:
        raise ValueError(f"create_app needs {name}; start EmbeddedServices first")
    return url


async def _identity(app: web.Application) -> AsyncIterator[None]:
    app[IDENTITY] = await asyncio.to_thread(load_or_create, app[SETTINGS].data_dir)
    log.info("node id %s", app[IDENTITY].node_id)
    yield


async def _auth(app: web.Application) -> AsyncIterator[None]:
    """The admin token; with ``ARTDAG_L2_TRUSTED``, tokens those L2 servers issue, asked of
    them over a session of their own (short deadlines, no IPFS-sized buffers)."""
    settings = app[SETTINGS]
    token = await asyncio.to_thread(load_or_create_admin_token, settings.data_dir)
    if not settings.l2_trusted:
        app[AUTH] = Authenticator(token)
        app[PUBLICATIONS] = PublicationChecker(trusted=(), session=None, ttl_s=PUBLISHED_TTL_S, timeout_s=1)
        yield
        return
    async with aiohttp.ClientSession() as session:
        app[PUBLICATIONS] = PublicationChecker(
            trusted=settings.l2_trusted, session=session, ttl_s=PUBLISHED_TTL_S, timeout_s=settings.l2_timeout
        )
        verifier = L2Verifier(
            trusted=settings.l2_trusted,
            scope=settings.public_url,
            session=session,
            ttl_s=settings.l2_verify_ttl,
            timeout_s=settings.l2_timeout,
        )
        app[AUTH] = Authenticator(token, verifier=verifier, revocations=Revocations(app[REDIS], app[KEYS]))
        yield


async def _redis(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    client = connect(_required(settings.redis_url, "redis_url"))
    keys = Keys(settings.redis_prefix)
    app[REDIS] = client
    app[KEYS] = keys
    app[CONTENT_INDEX] = ContentIndex(client, keys)
    app[STEP_INDEX] = StepIndex(client, keys)
    yield
    await client.aclose()


async def _ipfs(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    # A larger read buffer than aiohttp's 64 KiB: fewer pause/resume cycles when relaying
    # hundreds of MB from the daemon (measured in bench/store.py).
    session = aiohttp.ClientSession(read_bufsize=IPFS_READ_BUFSIZE)
    app[HTTP_SESSION] = session
    app[IPFS] = IpfsClient(_required(settings.ipfs_api, "ipfs_api"), session, settings.ipfs_timeout)
    yield
    await session.close()


async def _store(app: web.Application) -> AsyncIterator[None]:
    app[CONTENT_STORE] = ContentStore(app[IPFS], app[CONTENT_INDEX], app[REDIS], app[KEYS])
    app[LOCAL_CACHE] = LocalCache(app[SETTINGS].data_dir / "cache", app[IPFS])
    app[THUMBNAILS] = Thumbnails(app[SETTINGS].data_dir / "thumbnails", app[LOCAL_CACHE])
    yield


async def _sync(app: web.Application) -> AsyncIterator[None]:
    """The node's published state (recovered first if Redis lost it) and its trusted peers."""
    settings, identity = app[SETTINGS], app[IDENTITY]
    names = IpnsNames(app[IPFS], identity.node_id)
    recovery = functools.partial(
        recover,
        identity=identity,
        ipfs=app[IPFS],
        client=app[REDIS],
        keys=app[KEYS],
        names=names,
        data_dir=settings.data_dir,
    )
    try:
        await app[STEP_INDEX].list_older_steps()
        await app[CONTENT_INDEX].list_older_media()
        await recovery()
    except Exception as exc:  # the publisher tries again before it publishes anything
        log.error("could not recover from the last published state yet (%s)", exc)
    publisher = StatePublisher(
        identity=identity,
        ipfs=app[IPFS],
        client=app[REDIS],
        keys=app[KEYS],
        names=names,
        url=settings.public_url,
        data_dir=settings.data_dir,
        debounce_s=settings.state_debounce,
        recovery=recovery,
    )
    refilling = (settings.data_dir / REFILL_MARKER).exists()  # others keep entries meanwhile
    peering = DaemonPeering(
        ipfs=app[IPFS], client=app[REDIS], keys=app[KEYS], node_id=identity.node_id, refilling=refilling
    )
    peer_sync = PeerSync(
        peers=parse_peers(settings.peers),
        ipfs=app[IPFS],
        session=app[HTTP_SESSION],
        client=app[REDIS],
        keys=app[KEYS],
        poll_s=settings.peer_poll,
        peering=peering,
    )
    app[IPNS_NAMES], app[STATE_PUBLISHER], app[PEER_SYNC] = names, publisher, peer_sync
    app[DAEMON_PEERING] = peering
    peering.start()
    publisher.start()
    peer_sync.start()
    refill_task = asyncio.create_task(_refill(app, peering), name="ipfs-refill")
    yield
    refill_task.cancel()
    await asyncio.gather(refill_task, return_exceptions=True)
    await peer_sync.close()
    await publisher.close()
    await peering.close()


async def _refill(app: web.Application, peering: DaemonPeering) -> None:
    """Refill a repository that replaced one another implementation made (``federation/refill.py``),
    once the daemon is peered with the cluster's; tried again at the next start if it fails."""
    if not peering.refilling:  # no marker at start: nothing was moved aside
        return
    try:
        await refill(
            app[SETTINGS].data_dir / REFILL_MARKER,
            ipfs=app[IPFS],
            cache=app[LOCAL_CACHE],
            contents=app[CONTENT_INDEX],
            steps=app[STEP_INDEX],
            peering=peering,
        )
    except NodeError as exc:
        log.error("could not refill the new IPFS repository yet (%s); tried again at the next start", exc)
    except Exception:  # a bug: logged, and the marker stays for the next start
        log.exception("refilling the new IPFS repository failed; tried again at the next start")


@web.middleware
async def state_changes(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A request that changed something (a write that succeeded) marks the node's state, and
    that of every node sharing its Redis, for publishing."""
    response = await handler(request)
    if request.method not in ("GET", "HEAD", "OPTIONS") and response.status < 400 and NOTICES in request.app:
        try:
            await request.app[NOTICES].publish(STATE_NOTICE)
        except NodeError as exc:  # published with the next change, or at the next start
            log.warning("state change not announced (%s)", exc.message)
    return response


async def _executor(app: web.Application) -> AsyncIterator[None]:
    """Workers, scheduler and runs; unfinished runs resume once the node is up."""
    settings = app[SETTINGS]
    await asyncio.to_thread(tool_versions)  # read once here, not on the event loop by a request
    pool = WorkerPool(settings.workers)
    writer = RecordWriter(app[IDENTITY], app[CONTENT_STORE], app[STEP_INDEX])
    notices = Notices(app[REDIS], app[KEYS])
    for prefix in ("step", "run", STATE_NOTICE.split(":", maxsplit=1)[0]):  # whatever may change the state
        notices.on(prefix, app[STATE_PUBLISHER].on_notice)
    peer_sync = app[PEER_SYNC]
    adopt = PeerAdoption(
        peer_steps=peer_sync.steps,
        store=app[CONTENT_STORE],
        steps=app[STEP_INDEX],
        cache=app[LOCAL_CACHE],
        trusted=set(peer_sync.peers),
    )
    board = ClaimBoard(
        app[REDIS], app[KEYS], app[IDENTITY].node_id, lease_s=settings.lease, max_attempts=settings.attempts
    )
    scheduler = Scheduler(
        store=app[CONTENT_STORE],
        steps=app[STEP_INDEX],
        cache=app[LOCAL_CACHE],
        pool=pool,
        work_dir=settings.data_dir / "work",
        step_timeout_s=settings.step_timeout,
        receipt=writer.receipt,
        published=writer.publish_soon,
        claims=RedisClaims(board, notices, heartbeat_s=settings.heartbeat),
        adopt=adopt if peer_sync.peers else None,
    )
    activities = app[ACTIVITIES] = Activities(app[REDIS], app[KEYS])
    run_manager = RunManager(
        activities=activities,
        client=app[REDIS],
        keys=app[KEYS],
        scheduler=scheduler,
        writer=writer,
        store=app[CONTENT_STORE],
        steps=app[STEP_INDEX],
        notices=notices,
    )
    app[WORKER_POOL], app[SCHEDULER], app[RECORD_WRITER], app[RUNS] = pool, scheduler, writer, run_manager
    app[RUN_QUERIES] = RunQueries(app[REDIS], app[KEYS])
    app[NOTICES] = notices
    app[DELETION] = DeletionRules(
        store=app[CONTENT_STORE],
        checker=app[PUBLICATIONS],
        activities=activities,
        forget_run=app[RUN_QUERIES].delete,
        active_content=app[RUN_QUERIES].active_content,
    )
    app[RECIPES] = RecipeStore(app[CONTENT_STORE], app[REDIS], app[KEYS])
    notices.start()
    stopping = asyncio.Event()
    adopting = asyncio.create_task(_adopt_runs(run_manager, stopping), name="adopt-runs")
    yield
    stopping.set()  # not cancel(): a Redis call can swallow a cancellation and loop on
    await adopting
    await notices.close()
    await run_manager.close()
    await writer.close()
    await pool.close()


async def _adopt_runs(run_manager: RunManager, stopping: asyncio.Event) -> None:
    """Work on every unfinished run: at start (resume), then every ADOPT_POLL_S in case a
    notice was missed (notices bring new runs at once), until ``stopping`` is set."""
    while not stopping.is_set():
        try:
            await run_manager.resume()
        except NodeError as exc:  # Redis down: serve anyway; /health says why
            log.warning("could not look for unfinished runs: %s", exc.message)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), ADOPT_POLL_S)


async def _watch_services(app: web.Application) -> AsyncIterator[None]:
    """Log, once, each embedded daemon that dies while the node runs (``/health`` says 503)."""

    async def watch() -> None:
        reported: set[str] = set()
        while True:
            for role, problem in app[SERVICES].problems().items():
                if role not in reported:
                    reported.add(role)
                    log.error("%s", problem)
            await asyncio.sleep(SERVICE_WATCH_INTERVAL_S)

    task = asyncio.create_task(watch(), name="watch-embedded-services")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
