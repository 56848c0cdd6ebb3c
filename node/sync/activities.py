"""Activities: what happened to runs and content, who did it, when, and which CIDs (the seeds'
"Record activities when runs complete for deletion tracking"). A Redis stream, newest last."""

from __future__ import annotations

import json
import time
from typing import Any

import redis.asyncio as aioredis

from node.sync.connection import redis_errors
from node.sync.keys import Keys

ACTIVITIES_MAX_LEN = 100_000


class Activities:
    """Appends and lists activity records."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self._redis = client
        self._keys = keys

    async def record(self, kind: str, who: str, cids: list[str], **details: Any) -> None:
        """``kind`` (run_completed, run_deleted, content_deleted, ...) by ``who``, naming ``cids``."""
        entry = {
            "kind": kind,
            "who": who,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "cids": cids,
            **details,
        }
        with redis_errors():
            await self._redis.xadd(
                self._keys.activities,
                {"data": json.dumps(entry)},
                maxlen=ACTIVITIES_MAX_LEN,
                approximate=True,
            )

    async def newest(self, limit: int) -> list[dict[str, Any]]:
        with redis_errors():
            entries: Any = await self._redis.xrevrange(self._keys.activities, count=limit)
        return [{"id": str(entry_id), **json.loads(fields["data"])} for entry_id, fields in entries]
