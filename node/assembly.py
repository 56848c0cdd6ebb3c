"""The node, assembled: the one place that opens every part in order and closes it in reverse.

``async with Node.open(settings, services) as node`` opens the core (identity, Redis and the
indexes, IPFS and the store), auth, the federation (published state, peers, daemon peering)
and the executor, then starts hearing notices and adopting unfinished runs; leaving it stops
them in reverse order (notices stop before the executor, so none adopts a run meanwhile). The
HTTP layer (``node.http.create_app(node)``) only adds routes and middleware around it; tests and
benches use the same object. A part opened later may use any part opened before it, never one
after, which is what makes the order safe to read top to bottom.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from node import __version__, logs
from node.auth.deletion import DeletionRules
from node.auth.l2 import L2Verifier
from node.auth.local import Authenticator, load_or_create_admin_token
from node.auth.publication import PublicationChecker
from node.auth.revocation import Revocations
from node.auth.revocation_file import RevocationFile
from node.auth.sessions import Sessions
from node.config import Settings
from node.errors import NodeError
from node.executor.adoption import PeerAdoption
from node.executor.callbacks import Notifier
from node.executor.claiming import RedisClaims
from node.executor.garbage import GarbageCollector
from node.executor.planner import tool_versions
from node.executor.pool import WorkerPool
from node.executor.provenance import RecordWriter
from node.executor.recipe_store import RecipeStore
from node.executor.reexecution_jobs import Reexecutions
from node.executor.reexecutor import Reexecutor
from node.executor.run_manager import RunManager
from node.executor.scheduler import Scheduler
from node.federation.peering import DaemonPeering
from node.federation.peers import PeerSync, parse_peers
from node.federation.publisher import IpnsNames, StatePublisher
from node.federation.recovery import recover
from node.federation.refill import refill
from node.identity import NodeIdentity, load_or_create
from node.media.ffmpeg import cpu_class
from node.metrics import Metrics
from node.services import REFILL_MARKER, EmbeddedServices
from node.store.content import ContentStore
from node.store.gone import Gone
from node.store.ipfs import IpfsClient
from node.store.local_cache import LocalCache
from node.store.thumbnail_cache import Thumbnails
from node.sync.activities import Activities
from node.sync.callbacks import CallbackQueue
from node.sync.claims import ClaimBoard
from node.sync.connection import connect
from node.sync.eviction import StepEviction
from node.sync.index import ContentIndex, StepIndex
from node.sync.keys import Keys
from node.sync.notices import Notices
from node.sync.redis_watch import RedisWatch
from node.sync.run_index import RunIndex

log = logging.getLogger(__name__)

ADOPT_POLL_S = 2.0
STATE_NOTICE = "state:changed"  # a write that changed what the node publishes
PUBLISHED_TTL_S = 10.0  # an L2's answer about what it published is reused this long
SERVICE_WATCH_INTERVAL_S = 1.0
RESTARTS_MAX = 20  # restarts of one embedded daemon in one life of the node
RESTART_FIRST_WAIT_S = 1.0  # after a failed restart; doubles each time
RESTART_MAX_WAIT_S = 30.0
RESTARTS_FORGOTTEN_S = 600.0  # a daemon up this long since its last restart starts a new count
IPFS_READ_BUFSIZE = 1024 * 1024
PROBE_CONNECTIONS = 2
PROBE_WAIT_S = 1.0


@dataclass(frozen=True)
class NodeCore:
    """Identity, Redis with its indexes, IPFS and the store: what every later part uses."""

    settings: Settings
    services: EmbeddedServices | None  # the embedded daemons; None when all are external
    identity: NodeIdentity
    redis: aioredis.Redis
    redis_probe: aioredis.Redis  # two connections of its own: health checks never wait behind load
    keys: Keys
    contents: ContentIndex
    steps: StepIndex
    runs: RunIndex
    notices: Notices
    activities: Activities
    http_session: aiohttp.ClientSession  # for IPFS and peers (large read buffer)
    metrics: Metrics  # this node's own registry (GET /metrics), counted into by its parts
    ipfs: IpfsClient
    cache: LocalCache
    thumbnails: Thumbnails
    gone: Gone
    store: ContentStore


@dataclass(frozen=True)
class Node(NodeCore):
    """Every part of a running node, opened (see the module docstring for the order)."""

    auth: Authenticator
    publications: PublicationChecker
    names: IpnsNames
    publisher: StatePublisher
    peering: DaemonPeering
    peer_sync: PeerSync
    pool: WorkerPool
    writer: RecordWriter
    scheduler: Scheduler
    run_manager: RunManager
    recipes: RecipeStore
    deletion: DeletionRules
    redis_watch: RedisWatch
    garbage: GarbageCollector
    reexecutions: Reexecutions

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, settings: Settings, services: EmbeddedServices | None = None) -> AsyncIterator[Node]:
        """Open the node on ``settings`` (which must name reachable Redis and IPFS URLs)."""
        async with contextlib.AsyncExitStack() as stack:
            if services is not None:
                await stack.enter_async_context(_watching(services))
            core = await stack.enter_async_context(_core(settings, services))
            auth, publications = await stack.enter_async_context(_auth(core))
            federation = await stack.enter_async_context(_federation(core))
            executor = await stack.enter_async_context(_executor(core, federation))
            federation.peering.describe_with(_describing(settings, executor))  # for the cluster view
            stack.push_async_callback(core.notices.close)  # before the runs close: no notice adopts one
            node = cls(
                **vars(core),
                auth=auth,
                publications=publications,
                names=federation.names,
                publisher=federation.publisher,
                peering=federation.peering,
                peer_sync=federation.peer_sync,
                pool=executor.pool,
                writer=executor.writer,
                scheduler=executor.scheduler,
                run_manager=executor.run_manager,
                recipes=RecipeStore(core.store, core.redis, core.keys),
                deletion=DeletionRules(
                    store=core.store, checker=publications, activities=core.activities, runs=core.runs
                ),
                redis_watch=await stack.enter_async_context(_watching_redis(core, auth, federation)),
                garbage=await stack.enter_async_context(_collecting(core, publications)),
                reexecutions=await stack.enter_async_context(_reexecuting(core, executor)),
            )
            core.notices.start()
            await stack.enter_async_context(_adopting(executor.run_manager))
            yield node


def _describing(settings: Settings, executor: _Executor) -> Callable[[], dict[str, Any]]:
    """What this node says of itself in the cluster's registry at each peering round."""
    cpu = cpu_class()

    def describe() -> dict[str, Any]:
        busy = len(executor.pool.busy_pids)
        return {
            "url": settings.public_url,
            "version": __version__,
            "cpu": cpu,
            "workers": {"busy": busy, "total": executor.pool.size},
            "steps": executor.scheduler.running(),
        }

    return describe


@contextlib.asynccontextmanager
async def _core(settings: Settings, services: EmbeddedServices | None) -> AsyncIterator[NodeCore]:
    redis_url = _required(settings.redis_url, "redis_url")
    ipfs_api = _required(settings.ipfs_api, "ipfs_api")
    identity = await asyncio.to_thread(load_or_create, settings.data_dir)
    logs.node_id.set(identity.node_id)  # the tasks of this node, started from here on, log it
    log.info("node id %s", identity.node_id)
    metrics = Metrics()
    client = connect(redis_url, settings.redis_connections, metrics=metrics)
    # Not timed: the followers' reads block until a run's next event, which is no latency.
    followers = connect(redis_url, settings.redis_connections, wait_s=None)
    probe = connect(redis_url, PROBE_CONNECTIONS, wait_s=PROBE_WAIT_S, metrics=metrics)
    keys = Keys(settings.redis_prefix)
    # A larger read buffer than aiohttp's 64 KiB: fewer pause/resume cycles when relaying
    # hundreds of MB from the daemon (measured in bench/store.py).
    session = aiohttp.ClientSession(read_bufsize=IPFS_READ_BUFSIZE)
    ipfs = IpfsClient(ipfs_api, session, settings.ipfs_timeout, metrics=metrics)
    cache = LocalCache(settings.data_dir / "cache", ipfs)
    thumbnails = Thumbnails(settings.data_dir / "thumbnails", cache, memory_limit=settings.worker_memory)
    gone = Gone(cache, thumbnails)
    contents = ContentIndex(client, keys)
    try:
        yield NodeCore(
            settings=settings,
            services=services,
            identity=identity,
            redis=client,
            redis_probe=probe,
            keys=keys,
            contents=contents,
            steps=StepIndex(client, keys),
            runs=RunIndex(client, keys, followers),
            notices=Notices(client, keys),
            activities=Activities(client, keys),
            http_session=session,
            metrics=metrics,
            ipfs=ipfs,
            cache=cache,
            thumbnails=thumbnails,
            gone=gone,
            store=ContentStore(ipfs, contents, client, keys, gone=gone),
        )
    finally:
        await session.close()
        await followers.aclose()
        await probe.aclose()
        await client.aclose()


def _required(url: str | None, name: str) -> str:
    if url is None:
        raise ValueError(f"Node.open needs {name}; start EmbeddedServices first")
    return url


@contextlib.asynccontextmanager
async def _auth(core: NodeCore) -> AsyncIterator[tuple[Authenticator, PublicationChecker]]:
    """The admin token; with ``ARTDAG_L2_TRUSTED``, tokens those L2 servers issue, asked of
    them over a session of their own (short deadlines, no IPFS-sized buffers)."""
    settings = core.settings
    token = await asyncio.to_thread(load_or_create_admin_token, settings.data_dir)
    sessions = Sessions(core.redis, core.keys, core.identity.node_id)
    if not settings.l2_trusted:
        yield (
            Authenticator(token, sessions=sessions),
            PublicationChecker(trusted=(), session=None, ttl_s=PUBLISHED_TTL_S, timeout_s=1),
        )
        return
    async with aiohttp.ClientSession() as session:
        publications = PublicationChecker(
            trusted=settings.l2_trusted, session=session, ttl_s=PUBLISHED_TTL_S, timeout_s=settings.l2_timeout
        )
        verifier = L2Verifier(
            trusted=settings.l2_trusted,
            scope=settings.public_url,
            session=session,
            ttl_s=settings.l2_verify_ttl,
            timeout_s=settings.l2_timeout,
        )
        yield (
            Authenticator(token, sessions=sessions, verifier=verifier, revocations=await _revocations(core)),
            publications,
        )


async def _revocations(core: NodeCore) -> Revocations:
    """The node's revocations, read from its file and restored into Redis."""
    revocations = Revocations(core.redis, core.keys, RevocationFile(core.settings.data_dir))
    await revocations.load()
    return revocations


@dataclass(frozen=True)
class _Federation:
    names: IpnsNames
    publisher: StatePublisher
    peering: DaemonPeering
    peer_sync: PeerSync


@contextlib.asynccontextmanager
async def _federation(core: NodeCore) -> AsyncIterator[_Federation]:
    """The node's published state (recovered first if Redis lost it), its trusted peers and
    the peering of the cluster's IPFS daemons; a repository moved aside is refilled."""
    settings, identity, ipfs, client, keys = core.settings, core.identity, core.ipfs, core.redis, core.keys
    names = IpnsNames(ipfs, identity.node_id)
    recovery = functools.partial(
        recover,
        identity=identity,
        ipfs=ipfs,
        client=client,
        keys=keys,
        names=names,
        data_dir=settings.data_dir,
    )
    try:
        await recovery()
    except Exception as exc:  # the publisher tries again before it publishes anything
        log.error("could not recover from the last published state yet (%s)", exc)
    publisher = StatePublisher(
        identity=identity,
        ipfs=ipfs,
        client=client,
        keys=keys,
        names=names,
        url=settings.public_url,
        data_dir=settings.data_dir,
        debounce_s=settings.state_debounce,
        recovery=recovery,
        metrics=core.metrics,
    )
    marker = settings.data_dir / REFILL_MARKER
    refilling = marker.exists()  # others keep entries meanwhile
    peering = DaemonPeering(
        ipfs=ipfs, client=client, keys=keys, node_id=identity.node_id, refilling=refilling
    )
    peer_sync = PeerSync(
        peers=parse_peers(settings.peers),
        ipfs=ipfs,
        session=core.http_session,
        client=client,
        keys=keys,
        poll_s=settings.peer_poll,
        peering=peering,
        metrics=core.metrics,
    )
    for prefix in ("step", "run", STATE_NOTICE.split(":", maxsplit=1)[0]):  # may change the state
        core.notices.on(prefix, publisher.on_notice)
    peering.start()
    publisher.start()
    peer_sync.start()
    refilled = asyncio.create_task(
        _refill(marker, core, peering),
        name="ipfs-refill",
    )
    try:
        yield _Federation(names, publisher, peering, peer_sync)
    finally:
        refilled.cancel()
        await asyncio.gather(refilled, return_exceptions=True)
        await peer_sync.close()
        await publisher.close()
        await peering.close()


async def _refill(marker: Path, core: NodeCore, peering: DaemonPeering) -> None:
    """Refill a repository that replaced one another implementation made
    (``federation/refill.py``), once the daemon is peered with the cluster's; tried again at
    the next start if it fails."""
    if not peering.refilling:  # no marker at start: nothing was moved aside
        return
    try:
        await refill(
            marker,
            ipfs=core.ipfs,
            cache=core.cache,
            gone=core.gone,
            contents=core.contents,
            steps=core.steps,
            peering=peering,
        )
    except NodeError as exc:
        log.error("could not refill the new IPFS repository yet (%s); tried again at the next start", exc)
    except Exception:  # a bug: logged, and the marker stays for the next start
        log.exception("refilling the new IPFS repository failed; tried again at the next start")


@contextlib.asynccontextmanager
async def _reexecuting(core: NodeCore, executor: _Executor) -> AsyncIterator[Reexecutions]:
    """Re-executions of provenance records, on the run's workers; stopped before them."""
    settings = core.settings
    reexecutor = Reexecutor(
        ipfs=core.ipfs,
        index=core.store.index,
        cache=core.cache,
        pool=executor.pool,
        work_dir=settings.data_dir / "work",
        step_timeout_s=settings.step_timeout,
    )
    jobs = Reexecutions(reexecutor, executor.writer)
    try:
        yield jobs
    finally:
        await jobs.close()


@dataclass(frozen=True)
class _Executor:
    pool: WorkerPool
    writer: RecordWriter
    scheduler: Scheduler
    run_manager: RunManager


@contextlib.asynccontextmanager
async def _executor(core: NodeCore, federation: _Federation) -> AsyncIterator[_Executor]:
    """Workers, scheduler and runs."""
    settings, store, steps, cache = core.settings, core.store, core.steps, core.cache
    await asyncio.to_thread(tool_versions)  # read once here, not on the event loop by a request
    pool = WorkerPool(settings.workers, memory_limit=settings.worker_memory)
    writer = RecordWriter(core.identity, store, steps)
    board = ClaimBoard(
        core.redis, core.keys, core.identity.node_id, lease_s=settings.lease, max_attempts=settings.attempts
    )
    peer_sync = federation.peer_sync
    adopt = PeerAdoption(
        peer_steps=peer_sync.steps, store=store, steps=steps, cache=cache, trusted=set(peer_sync.peers)
    )
    scheduler = Scheduler(
        store=store,
        steps=steps,
        cache=cache,
        pool=pool,
        work_dir=settings.data_dir / "work",
        step_timeout_s=settings.step_timeout,
        receipt=writer.receipt,
        published=writer.publish_soon,
        claims=RedisClaims(board, core.notices, heartbeat_s=settings.heartbeat),
        adopt=adopt if peer_sync.peers else None,
        metrics=core.metrics,
    )
    notifier = Notifier(
        CallbackQueue(core.redis, core.keys), core.identity, core.http_session, settings.callback_hosts
    )
    run_manager = RunManager(
        notifier=notifier,
        activities=core.activities,
        runs=core.runs,
        scheduler=scheduler,
        writer=writer,
        store=store,
        steps=steps,
        notices=core.notices,
        max_queued=settings.max_queued,
        retry_max_s=settings.retry_max,
        cache=cache,
        segment_s=settings.segment_seconds,
    )
    core.metrics.watch(
        ready_steps=lambda: len(scheduler.waiting_priorities),
        active_runs=lambda: run_manager.active,
        workers_busy=lambda: len(pool.busy_pids),
        workers_total=lambda: pool.size,
    )
    await _take_back_claims(board)
    notifier.start()
    try:
        yield _Executor(pool, writer, scheduler, run_manager)
    finally:
        await notifier.close()
        await run_manager.close()
        await writer.close()
        await pool.close()


async def _take_back_claims(board: ClaimBoard) -> None:
    """Drop the claims this node's earlier life held (killed, it could not release them), so
    its unfinished runs resume now rather than after the leases lapse."""
    try:
        dropped = await board.release_own()
    except NodeError as exc:  # Redis down: the leases lapse by themselves
        log.warning("could not take back this node's earlier claims (%s)", exc.message)
        return
    if dropped:
        log.info("took back %d claims this node held before it stopped", dropped)


@contextlib.asynccontextmanager
async def _watching_redis(
    core: NodeCore, auth: Authenticator, federation: _Federation
) -> AsyncIterator[RedisWatch]:
    """Notice an emptied Redis within ``ARTDAG_REDIS_WATCH`` seconds, even while idle, and
    restore: revocations first (they must win), then the node's last published state."""
    watch = RedisWatch(core.redis, core.keys, interval_s=core.settings.redis_watch)
    if auth.revocations is not None:
        watch.on_lost(auth.revocations.restore)
        watch.on_tick(auth.revocations.refresh)
    watch.on_lost(federation.publisher.recover)
    await watch.start()
    try:
        yield watch
    finally:
        await watch.close()


@contextlib.asynccontextmanager
async def _collecting(core: NodeCore, publications: PublicationChecker) -> AsyncIterator[GarbageCollector]:
    """The disk budget (``ARTDAG_DISK_BUDGET``), looked at every ``ARTDAG_GC_INTERVAL``."""
    collector = GarbageCollector(
        budget=core.settings.disk_budget,
        interval_s=core.settings.gc_interval,
        node_id=core.identity.node_id,
        store=core.store,
        steps=core.steps,
        eviction=StepEviction(core.redis, core.keys),
        runs=core.runs,
        cache=core.cache,
        activities=core.activities,
        published=publications.published,
        changed=functools.partial(core.notices.publish, STATE_NOTICE),
        metrics=core.metrics,
    )
    collector.start()
    try:
        yield collector
    finally:
        await collector.close()


@contextlib.asynccontextmanager
async def _adopting(run_manager: RunManager) -> AsyncIterator[None]:
    """Work on every unfinished run: at start (resume), then every ADOPT_POLL_S in case a
    notice was missed (notices bring new runs at once), until the node closes."""
    stopping = asyncio.Event()

    async def adopt() -> None:
        while not stopping.is_set():
            try:
                await run_manager.resume()
            except NodeError as exc:  # Redis down: serve anyway; /health says why
                log.warning("could not look for unfinished runs: %s", exc.message)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), ADOPT_POLL_S)

    task = asyncio.create_task(adopt(), name="adopt-runs")
    try:
        yield
    finally:
        stopping.set()  # not cancel(): a Redis call can swallow a cancellation and loop on
        await task


@contextlib.asynccontextmanager
async def _watching(services: EmbeddedServices) -> AsyncIterator[None]:
    """Supervise the embedded daemons: one that dies is started again, on its ports and data,
    with a log line each time, backing off between failed starts and giving up after
    RESTARTS_MAX (``/health`` is 503 while one is down, 200 again once it is back)."""
    task = asyncio.create_task(_supervise(services), name="supervise-embedded-services")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _supervise(services: EmbeddedServices) -> None:
    restarts: dict[str, int] = {}  # by role, since the daemon last stayed up RESTARTS_FORGOTTEN_S
    restarted_at: dict[str, float] = {}
    not_before: dict[str, float] = {}
    while True:
        for role, problem in services.problems().items():
            now = time.monotonic()
            if now - restarted_at.get(role, now) > RESTARTS_FORGOTTEN_S:
                restarts[role] = 0  # it ran a long while: a new failure starts a new count
            tried = restarts.get(role, 0)
            if tried > RESTARTS_MAX or not_before.get(role, 0.0) > now:
                continue
            restarts[role] = tried + 1
            if tried == RESTARTS_MAX:
                log.error("%s; not restarting it again after %d tries: restart the node", problem, tried)
                continue
            log.error("%s; restarting it (try %d of %d)", problem, tried + 1, RESTARTS_MAX)
            delay = min(RESTART_MAX_WAIT_S, RESTART_FIRST_WAIT_S * 2**tried)
            not_before[role] = now + delay  # also after a success: one that dies at once waits
            try:
                await asyncio.to_thread(services.restart, role)
            except Exception as exc:
                log.error("%s (trying again in %.0f s)", exc, delay)
            else:
                restarted_at[role] = time.monotonic()
                log.warning("embedded %s is back", role)
        await asyncio.sleep(SERVICE_WATCH_INTERVAL_S)
