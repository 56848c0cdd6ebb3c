"""Worker slots handed out by priority: a step of a higher-priority run gets the next free
worker first; within one priority, the run submitted first (first come, first served).

Every node of a cluster orders its own waiting steps this way, so the cluster as a whole takes
higher-priority work first: a node claims a step only once it holds a slot for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import AsyncIterator

Rank = tuple[int, str]  # (-priority, submitted): the smaller, the sooner


class PrioritySlots:
    """At most ``size`` holders at once; waiters are let in by rank, then in arrival order."""

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiting: list[tuple[Rank, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()

    @property
    def waiting(self) -> list[Rank]:
        """The ranks of those waiting for a slot now (for tests and diagnostics)."""
        return [rank for rank, _, granted in self._waiting if not granted.done()]

    @contextlib.asynccontextmanager
    async def held(self, rank: Rank) -> AsyncIterator[None]:
        """Hold a slot for the block, waiting behind better-ranked (and earlier) waiters."""
        if self._free > 0 and not self._waiting:
            self._free -= 1
        else:
            granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            waiter = (rank, next(self._arrivals), granted)
            heapq.heappush(self._waiting, waiter)
            try:
                await granted
            except asyncio.CancelledError:
                if granted.done() and not granted.cancelled():  # handed a slot, then cancelled
                    self._release()
                elif waiter in self._waiting:  # gone before its turn: not a waiter any more
                    self._waiting.remove(waiter)
                    heapq.heapify(self._waiting)
                raise
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        """The slot goes to the best-ranked waiter still waiting, else back to the pool."""
        while self._waiting:
            _, _, granted = heapq.heappop(self._waiting)
            if not granted.done():
                granted.set_result(None)
                return
        self._free += 1
