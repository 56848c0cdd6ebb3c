"""Adds and garbage collection take turns on one node.

An upload or a step's output is added to IPFS unpinned while it streams, and pinned once it
arrived whole (``ContentStore``): between the two, Kubo's ``repo/gc`` would remove its blocks.
So a collection waits until no add is in flight, and adds that start meanwhile wait until it
is over. Collections are rare (only above the disk budget, or when the admin asks), so an
upload seldom waits; a stream of uploads cannot starve a collection, which closes the gate
before it waits; and one slow upload cannot hold every add back: after ``QUIET_WAIT_S`` the gate
opens again and that collection skips ``repo/gc`` (the next one collects what it left).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

QUIET_WAIT_S = 30.0  # the longest new adds are held back while waiting for those in flight


class AddGate:
    """Counts the adds in flight; ``collecting`` holds new ones back and waits for the rest."""

    def __init__(self) -> None:
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._open = asyncio.Event()
        self._open.set()
        self._collector = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def adding(self) -> AsyncIterator[None]:
        """Around one add and its pin: waits while a collection runs."""
        await self._open.wait()
        self._in_flight += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()

    @contextlib.asynccontextmanager
    async def collecting(self, wait_s: float = QUIET_WAIT_S) -> AsyncIterator[bool]:
        """Around a collection: yields True once no add is in flight (new ones wait meanwhile),
        or False if adds are still going after ``wait_s`` (a slow upload holds its add as long
        as its client sends): then nothing is held back, and the collection must not run
        ``repo/gc`` this time."""
        async with self._collector:
            self._open.clear()
            try:
                quiet = True
                try:
                    await asyncio.wait_for(self._idle.wait(), wait_s)
                except TimeoutError:
                    quiet = False
                    self._open.set()  # hold nothing back for a collection that will not run it
                yield quiet
            finally:
                self._open.set()
