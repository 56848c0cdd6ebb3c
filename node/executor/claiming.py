"""Claims for the scheduler on the shared Redis: ``ClaimBoard`` plus waiting on notices.

A step held by another node is waited for as docs/design.md "Claims" says: the caller watches its notice
first (:meth:`RedisClaims.watch`), re-checks with ``claim_or_hit`` (which also takes the step
over once the holder's lease has lapsed), and only then waits, for the notice or one poll
interval, whichever comes first.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from node.sync.claims import Claim, ClaimBoard, step_notice
from node.sync.index import StepEntry
from node.sync.notices import Notices

POLL_FRACTION = 0.5  # of the lease: how long a waiter trusts notices before re-checking


class RedisClaims:
    """The scheduler's claims when nodes cooperate (always, in the app)."""

    def __init__(self, board: ClaimBoard, notices: Notices, *, heartbeat_s: float) -> None:
        self._board = board
        self._notices = notices
        self.heartbeat_s = heartbeat_s
        self.lease_s = board.lease_ms / 1000
        self.node_id = board.node_id
        self._poll_s = POLL_FRACTION * board.lease_ms / 1000

    async def claim(self, cache_id: str, *, recompute: bool = False, scope: str = "") -> Claim:
        """won, hit, held (elsewhere) or failed; a held step is waited for with :meth:`watch`."""
        return await self._board.claim_or_hit(cache_id, recompute=recompute, scope=scope)

    @contextlib.asynccontextmanager
    async def watch(self, cache_id: str) -> AsyncIterator[Callable[[], Awaitable[None]]]:
        async with self._notices.watching(step_notice(cache_id)) as noticed:

            async def wait() -> None:
                await _wait(noticed, self._poll_s)

            yield wait

    async def heartbeat(self, cache_id: str, token: str) -> bool:
        return await self._board.heartbeat(cache_id, token)

    async def commit(self, entry: StepEntry, token: str, receipt: bytes = b"") -> bool:
        return await self._board.commit(entry, token, receipt)

    async def release(self, cache_id: str, token: str, error: str, *, scope: str = "") -> None:
        await self._board.release(cache_id, token, error, scope=scope)

    async def release_own(self) -> int:
        """Drop the claims an earlier life of this node held (see ``ClaimBoard.release_own``)."""
        return await self._board.release_own()


async def _wait(event: asyncio.Event, timeout_s: float) -> None:
    with contextlib.suppress(TimeoutError):  # the poll fallback: re-check anyway
        await asyncio.wait_for(event.wait(), timeout_s)
