"""Noticing, within seconds and even on an idle node, that Redis was emptied or replaced.

The first node to find the ``epoch`` key missing sets it to a random value (SET NX); every node
remembers the value it saw. A node that later finds the key gone or changed knows Redis lost
what it held (a FLUSHALL, a restart without persistence, another server behind the address),
and runs its restore listeners: its last published state, its revocations. While they have not
all succeeded the watch says ``restoring`` (``/health`` answers 503 with why) and tries again at
each check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from node.errors import NodeError
from node.sync.connection import redis_errors
from node.sync.keys import Keys

log = logging.getLogger(__name__)

Listener = Callable[[], Awaitable[object]]


class RedisWatch:
    """Checks the epoch every ``interval_s``; restores through its listeners when it moved."""

    def __init__(self, client: aioredis.Redis, keys: Keys, *, interval_s: float) -> None:
        self._redis = client
        self._keys = keys
        self._interval_s = interval_s
        self._epoch: str | None = None  # the value this node saw; None: not read yet
        self._lost: list[Listener] = []
        self._ticks: list[Listener] = []
        self.restoring_since: float | None = None  # wall clock; None: nothing to restore
        self.last_error = ""  # why the last restore did not finish
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def on_lost(self, listener: Listener) -> None:
        """Run ``listener`` when Redis was emptied (and again at each check until all succeed)."""
        self._lost.append(listener)

    def on_tick(self, listener: Listener) -> None:
        """Run ``listener`` at each check that finds Redis as it was (cheap work only)."""
        self._ticks.append(listener)

    @property
    def restoring(self) -> bool:
        return self.restoring_since is not None

    async def start(self) -> None:
        """Read (or set) the epoch now, then check it every ``interval_s`` in the background."""
        with contextlib.suppress(NodeError):  # Redis down at start: the first check reads it
            await self.check()
        self._task = asyncio.create_task(self._loop(), name="watch-redis")

    async def close(self) -> None:
        self._stopping.set()  # not cancel(): a Redis call can swallow a cancellation
        if self._task is not None:
            await self._task

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval_s)
            if self._stopping.is_set():
                return
            try:
                await self.check()
            except NodeError as exc:  # Redis down: the outage is /health's to report
                log.debug("Redis not watched this time (%s)", exc.message)
            except Exception:  # a bug in a listener: logged, the watch goes on
                log.exception("watching Redis failed")

    async def check(self) -> bool:
        """Look at the epoch once; whether Redis was found emptied (now or still restoring)."""
        with redis_errors():
            seen = await self._redis.get(self._keys.epoch())
        if self._epoch is not None and seen != self._epoch:
            self.restoring_since = self.restoring_since or time.time()
            log.warning(
                "Redis lost what it held (its epoch is %s); restoring", "gone" if seen is None else "new"
            )
        if seen is None or seen != self._epoch:
            self._epoch = await self._set_epoch()
        if self.restoring:
            await self._restore()
            return True
        for listener in self._ticks:
            await listener()
        return False

    async def _set_epoch(self) -> str:
        """The epoch, set now if no node has set it since Redis was emptied."""
        with redis_errors():
            await self._redis.set(self._keys.epoch(), secrets.token_hex(16), nx=True)
            return str(await self._redis.get(self._keys.epoch()))

    async def _restore(self) -> None:
        started = self.restoring_since or time.time()
        for listener in self._lost:
            try:
                await listener()
            except Exception as exc:  # IPFS or Redis down, say: tried again at the next check
                self.last_error = exc.message if isinstance(exc, NodeError) else repr(exc)
                log.warning("restoring after Redis was emptied: not yet (%s)", self.last_error)
                return
        self.restoring_since, self.last_error = None, ""
        log.warning("restored after Redis was emptied, in %.1f s", time.time() - started)
