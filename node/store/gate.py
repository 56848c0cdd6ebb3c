"""Adds and garbage collection take turns on one node.

An upload or a step's output is added to IPFS unpinned while it streams, and pinned once it
arrived whole (``ContentStore``): between the two, Kubo's ``repo/gc`` would remove its blocks.
So a collection waits until no add is in flight, and adds that start meanwhile wait until it
is over. Collections are rare (only above the disk budget, or when the admin asks), so an
upload seldom waits; and a stream of uploads cannot starve a collection, which closes the gate
before it waits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


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
    async def collecting(self) -> AsyncIterator[None]:
        """Around a collection: no add is in flight while the block runs."""
        async with self._collector:
            self._open.clear()
            try:
                await self._idle.wait()
                yield
            finally:
                self._open.set()
