"""The notices channel: one pub/sub subscription per node, and waiting on topics.

Nodes publish ``step:{cache_id}`` when a step's claim ends (committed or released) and
``run:{run_id}`` when a run is submitted or cancelled. A waiter registers for its topic *before*
re-checking Redis and then waits, so a notice published in between is not missed; the wait has
a deadline, so a lost notice (a reconnect) costs at most one poll interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from node.sync.connection import redis_errors
from node.sync.keys import Keys

log = logging.getLogger(__name__)

Listener = Callable[[str], Awaitable[None]]
RECONNECT_S = 1.0
RECEIVE_S = 0.2  # how long one wait for a message lasts: the delay of close()


class Notices:
    """Publishes notices and wakes whoever waits for one."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self._client = client
        self._channel = keys.notices
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._listeners: list[tuple[str, Listener]] = []
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="notices")

    async def close(self) -> None:
        """Stop listening: within one RECONNECT_S (redis-py may swallow a cancellation while
        it waits for a message, so the loop is asked to end rather than cancelled)."""
        self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 5 * RECONNECT_S)
            except TimeoutError:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)

    def on(self, prefix: str, listener: Listener) -> None:
        """Call ``listener(rest)`` for every notice ``prefix:rest``."""
        self._listeners.append((prefix + ":", listener))

    async def publish(self, topic: str) -> None:
        with redis_errors():
            await self._client.publish(self._channel, topic)

    @contextlib.asynccontextmanager
    async def watching(self, topic: str) -> AsyncIterator[asyncio.Event]:
        """An event set when ``topic`` is published while the block runs."""
        event = asyncio.Event()
        self._waiters.setdefault(topic, set()).add(event)
        try:
            yield event
        finally:
            waiters = self._waiters.get(topic, set())
            waiters.discard(event)
            if not waiters:
                self._waiters.pop(topic, None)

    async def _listen(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._receive()
            except (RedisError, OSError) as exc:
                log.warning("notices: subscription lost (%s); polling until it is back", exc)
                self._wake_all()  # waiters re-check now rather than at their deadline
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), RECONNECT_S)

    async def _receive(self) -> None:
        pubsub = self._client.pubsub()
        try:
            await pubsub.subscribe(self._channel)
            while not self._stopping.is_set():
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=RECEIVE_S)
                if message is not None:
                    await self._dispatch(_text(message["data"]))
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _dispatch(self, topic: str) -> None:
        for event in self._waiters.get(topic, ()):
            event.set()
        for prefix, listener in self._listeners:
            if topic.startswith(prefix):
                try:
                    await listener(topic.removeprefix(prefix))
                except Exception:  # a listener's bug must not end the subscription
                    log.exception("notices: listener for %s failed", prefix)

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for event in waiters:
                event.set()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
