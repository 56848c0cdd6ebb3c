"""Whether content is published on an L2 (the seeds' "Cannot delete items published to L2").

One checker for every deletion rule. It asks each trusted L2 (the contract, also in
docs/security.md "The L2 contract"):

    POST {L2}/published   {"sha3_256": ["<hex>", ...]}
    200 {"published": ["<hex>", ...]}     (the subset this L2 has published)

Answers are reused for ``ttl_s`` (short: a publication elsewhere is seen soon). Any other answer,
or none, is :class:`L2Unavailable`: the caller refuses the deletion (fail closed). With no L2
trusted (local mode) nothing is published.
"""

from __future__ import annotations

import aiohttp
from cachetools import TTLCache

from node.auth.errors import L2Unavailable
from node.sync.keys import is_canonical_content_id

CACHE_SIZE = 10_000


class PublicationChecker:
    """Asks the trusted L2 servers which content ids they have published."""

    def __init__(
        self,
        *,
        trusted: tuple[str, ...],
        session: aiohttp.ClientSession | None,
        ttl_s: float,
        timeout_s: float,
    ) -> None:
        self._trusted = tuple(url.rstrip("/") for url in trusted)
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._known: TTLCache[str, bool] = TTLCache(maxsize=CACHE_SIZE, ttl=ttl_s)

    async def published(self, content_ids: list[str]) -> set[str]:
        """The ones any trusted L2 has published. L2Unavailable if one cannot be asked."""
        wanted = sorted({content_id for content_id in content_ids if content_id not in self._known})
        if wanted and self._trusted:
            found: set[str] = set()
            for l2 in self._trusted:
                found |= await self._ask(l2, wanted)
            for content_id in wanted:
                self._known[content_id] = content_id in found
        return {content_id for content_id in content_ids if self._known.get(content_id, False)}

    def forget(self, content_ids: list[str]) -> None:
        for content_id in content_ids:
            self._known.pop(content_id, None)

    async def _ask(self, l2: str, content_ids: list[str]) -> set[str]:
        if self._session is None:  # never so: there is a session whenever an L2 is trusted
            raise L2Unavailable(f"no connection to L2 {l2}", l2=l2)
        try:
            async with self._session.post(
                f"{l2}/published", json={"sha3_256": content_ids}, timeout=self._timeout
            ) as response:
                if response.status != 200:
                    raise L2Unavailable(
                        f"L2 {l2} answered {response.status} when asked what it published", l2=l2
                    )
                answer = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError, RecursionError) as exc:
            raise L2Unavailable(
                f"L2 {l2} could not be asked what it published ({exc or type(exc).__name__}); "
                "nothing is deleted",
                l2=l2,
            ) from exc
        listed = answer.get("published") if isinstance(answer, dict) else None
        if not isinstance(listed, list) or not all(
            isinstance(item, str) and is_canonical_content_id(item) for item in listed
        ):
            raise L2Unavailable(f"L2 {l2} sent a malformed answer about what it published", l2=l2)
        return set(listed) & set(content_ids)
