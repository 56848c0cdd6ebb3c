"""Typed keys for what the application holds (aiohttp ``web.AppKey``)."""

from __future__ import annotations

import asyncio

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web

from node.auth.deletion import DeletionRules
from node.auth.local import Authenticator
from node.auth.publication import PublicationChecker
from node.config import Settings
from node.executor.pool import WorkerPool
from node.executor.provenance import RecordWriter
from node.executor.recipe_store import RecipeStore
from node.executor.run_manager import RunManager
from node.executor.run_queries import RunQueries
from node.executor.scheduler import Scheduler
from node.federation.peering import DaemonPeering
from node.federation.peers import PeerSync
from node.federation.publisher import IpnsNames, StatePublisher
from node.identity import NodeIdentity
from node.services import EmbeddedServices
from node.store.content import ContentStore
from node.store.ipfs import IpfsClient
from node.store.local_cache import LocalCache
from node.store.thumbnail_cache import Thumbnails
from node.sync.activities import Activities
from node.sync.index import ContentIndex, StepIndex
from node.sync.keys import Keys
from node.sync.notices import Notices

SETTINGS = web.AppKey("settings", Settings)
SERVICES = web.AppKey("services", EmbeddedServices)  # absent when every daemon is external
IDENTITY = web.AppKey("identity", NodeIdentity)
REDIS = web.AppKey("redis", aioredis.Redis)
KEYS = web.AppKey("keys", Keys)
CONTENT_INDEX = web.AppKey("content_index", ContentIndex)
STEP_INDEX = web.AppKey("step_index", StepIndex)
HTTP_SESSION = web.AppKey("http_session", aiohttp.ClientSession)
IPFS = web.AppKey("ipfs", IpfsClient)
AUTH = web.AppKey("auth", Authenticator)
CONTENT_STORE = web.AppKey("content_store", ContentStore)
LOCAL_CACHE = web.AppKey("local_cache", LocalCache)
THUMBNAILS = web.AppKey("thumbnails", Thumbnails)
WORKER_POOL = web.AppKey("worker_pool", WorkerPool)
SCHEDULER = web.AppKey("scheduler", Scheduler)
RECORD_WRITER = web.AppKey("record_writer", RecordWriter)
RUNS = web.AppKey("runs", RunManager)
RUN_QUERIES = web.AppKey("run_queries", RunQueries)
RECIPES = web.AppKey("recipes", RecipeStore)
PROBE_SLOTS = web.AppKey("probe_slots", asyncio.Semaphore)  # ffprobe runs for clients
NOTICES = web.AppKey("notices", Notices)
IPNS_NAMES = web.AppKey("ipns_names", IpnsNames)
STATE_PUBLISHER = web.AppKey("state_publisher", StatePublisher)
PEER_SYNC = web.AppKey("peer_sync", PeerSync)
DAEMON_PEERING = web.AppKey("daemon_peering", DaemonPeering)
PUBLICATIONS = web.AppKey("publications", PublicationChecker)
ACTIVITIES = web.AppKey("activities", Activities)
DELETION = web.AppKey("deletion", DeletionRules)
