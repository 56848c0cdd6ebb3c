"""The content and step indexes against a real Redis."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from node.config import Settings
from node.sync.connection import connect
from node.sync.errors import RedisUnavailable
from node.sync.index import ContentEntry, ContentIndex, StepEntry, StepIndex
from node.sync.keys import Keys
from tests.helpers import closed_port

CID_A = "bafkreiaaaa"
CID_B = "bafkreibbbb"


def _content(index: int, cid: str = CID_A, created: float = 1000.0) -> ContentEntry:
    return ContentEntry(f"{index:064x}", cid, size=10 + index, media_type="image/png", created=created)


@pytest.fixture
def client(redis_client: aioredis.Redis) -> aioredis.Redis:
    return redis_client


@pytest.fixture
def content_index(client: aioredis.Redis, settings: Settings) -> ContentIndex:
    return ContentIndex(client, Keys(settings.redis_prefix))


@pytest.fixture
def step_index(client: aioredis.Redis, settings: Settings) -> StepIndex:
    return StepIndex(client, Keys(settings.redis_prefix))


async def test_content_round_trip_and_cid_mapping(content_index: ContentIndex) -> None:
    """An indexed item reads back whole, and its CID maps back to its content id."""
    entry = _content(1)
    await content_index.put(entry)
    assert await content_index.get(entry.content_id) == entry
    assert await content_index.content_id_for_cid(CID_A) == entry.content_id
    assert await content_index.get(_content(2).content_id) is None
    assert await content_index.content_id_for_cid(CID_B) is None


async def test_second_put_keeps_the_first_creation_time(content_index: ContentIndex) -> None:
    """Indexing the same bytes again (a second upload) does not move them in the listing."""
    await content_index.put(_content(1, created=1000.0))
    await content_index.put(_content(1, created=2000.0))
    stored = await content_index.get(_content(1).content_id)
    assert stored is not None and stored.created == 1000.0
    assert await content_index.newest(0, 10) == ([_content(1).content_id], 1)


async def test_listing_is_newest_first_and_paginated(content_index: ContentIndex) -> None:
    """Pages come from the sorted set, newest first, with the total count."""
    for index in range(5):
        await content_index.put(_content(index, cid=f"bafkrei{index}", created=1000.0 + index))
    ids = [_content(index).content_id for index in reversed(range(5))]
    assert await content_index.newest(0, 2) == (ids[:2], 5)
    assert await content_index.newest(2, 2) == (ids[2:4], 5)
    assert await content_index.newest(4, 2) == (ids[4:], 5)


async def test_owners_and_runs_are_sets(content_index: ContentIndex) -> None:
    """Two users can own the same content; runs that use it are recorded beside it."""
    content_id = _content(1).content_id
    for owner in ("alice", "bob", "alice"):
        await content_index.add_owner(content_id, owner)
    await content_index.add_run(content_id, "run-1")
    assert await content_index.owners(content_id) == {"alice", "bob"}
    assert await content_index.runs(content_id) == {"run-1"}


async def test_step_entry_is_never_overwritten(step_index: StepIndex) -> None:
    """The first committed result of a step stays; a later put changes nothing."""
    cache_id = "c" * 64
    first = StepEntry(cache_id, "bafkfirst", "d" * 64, 100, "image/png", "bafkreceipt")
    second = StepEntry(cache_id, "bafksecond", "e" * 64, 200, "image/png")
    assert await step_index.get(cache_id) is None
    assert await step_index.put_if_absent(first) is True
    assert await step_index.put_if_absent(second) is False
    assert await step_index.get(cache_id) == first


async def test_a_recorded_step_is_listed_once(
    step_index: StepIndex, redis_client: aioredis.Redis, settings: Settings
) -> None:
    """Each recorded step joins the ``steps`` listing (what the published step index lists)."""
    keys = Keys(settings.redis_prefix)
    for cache_id in ("1" * 64, "2" * 64, "1" * 64):
        await step_index.put_if_absent(StepEntry(cache_id, "bafkfirst", "d" * 64, 1, "image/png"))
    assert await redis_client.zrange(keys.steps, 0, -1) == ["1" * 64, "2" * 64]


async def test_redis_down_is_redis_unavailable() -> None:
    """With Redis unreachable the index raises RedisUnavailable (a 503), not a raw error."""
    redis_client = connect(f"redis://127.0.0.1:{closed_port()}/0")
    try:
        with pytest.raises(RedisUnavailable, match="Redis is unavailable"):
            await ContentIndex(redis_client, Keys()).get("a" * 64)
    finally:
        await redis_client.aclose()
