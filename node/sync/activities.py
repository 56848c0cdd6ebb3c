"""Activities: what happened to runs and content, who did it, when, and which CIDs (the seeds'
"Record activities when runs complete for deletion tracking"). A Redis stream, newest last."""

from __future__ import annotations

import json
import logging
from typing import Any

import redis.asyncio as aioredis

from node.errors import NodeError
from node.sync.connection import redis_errors
from node.sync.keys import Keys
from node.timestamps import utc_now

log = logging.getLogger(__name__)

ACTIVITIES_MAX_LEN = 100_000


class Activities:
    """Appends and lists activity records."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self._redis = client
        self._keys = keys

    async def record(self, kind: str, who: str, cids: list[str], **details: Any) -> None:
        """``kind`` (run_completed, run_deleted, content_deleted, ...) by ``who``, naming ``cids``.
        Best effort: what it records has happened already, so a failure is logged, not raised."""
        entry = {"kind": kind, "who": who, "at": utc_now(), "cids": cids, **details}
        try:
            with redis_errors():
                await self._redis.xadd(
                    self._keys.activities,
                    {"data": json.dumps(entry)},
                    maxlen=ACTIVITIES_MAX_LEN,
                    approximate=True,
                )
        except NodeError as exc:
            log.error("activity %s by %s not recorded (%s)", kind, who, exc.message)

    async def newest(self, limit: int) -> list[dict[str, Any]]:
        with redis_errors():
            entries: Any = await self._redis.xrevrange(self._keys.activities, count=limit)
        return [{"id": str(entry_id), **json.loads(fields["data"])} for entry_id, fields in entries]
