"""The claim scripts on a real Redis: one winner, hits after a commit, leases, fencing, attempts."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from node.config import Settings
from node.sync.claims import ClaimBoard
from node.sync.index import StepEntry, StepIndex
from node.sync.keys import Keys

STEP = hashlib.sha3_256(b"a step").hexdigest()
LEASE_S = 0.5


@pytest.fixture
def client(redis_client: aioredis.Redis) -> aioredis.Redis:
    return redis_client


def board(client: aioredis.Redis, settings: Settings, node: str, attempts: int = 3) -> ClaimBoard:
    return ClaimBoard(client, Keys(settings.redis_prefix), node, lease_s=LEASE_S, max_attempts=attempts)


def result(cache_id: str = STEP) -> StepEntry:
    return StepEntry(cache_id, "bafkreiexample", "c" * 64, 10, "image/png", "bafkreireceipt")


async def test_fifty_concurrent_claims_have_one_winner(client: aioredis.Redis, settings: Settings) -> None:
    boards = [board(client, settings, f"node{index}") for index in range(50)]
    claims = await asyncio.gather(*(each.claim_or_hit(STEP) for each in boards))
    assert [claim.outcome for claim in claims].count("won") == 1
    winner = next(claim for claim in claims if claim.outcome == "won")
    assert {claim.detail for claim in claims if claim.outcome == "held"} == {winner.token}


async def test_a_claim_after_a_commit_is_a_hit(client: aioredis.Redis, settings: Settings) -> None:
    first, second = board(client, settings, "a"), board(client, settings, "b")
    claim = await first.claim_or_hit(STEP)
    assert await first.commit(result(), claim.token)
    assert (await second.claim_or_hit(STEP)).outcome == "hit"
    assert await StepIndex(client, Keys(settings.redis_prefix)).get(STEP) == result()
    assert await client.zscore(Keys(settings.redis_prefix).steps, STEP) is not None  # listed


async def test_heartbeats_keep_a_slow_step_owned(client: aioredis.Redis, settings: Settings) -> None:
    owner, other = board(client, settings, "owner"), board(client, settings, "other")
    claim = await owner.claim_or_hit(STEP)
    for _ in range(6):  # 6 x lease/3 = twice the lease
        await asyncio.sleep(LEASE_S / 3)  # the work being done; the heartbeat is what is tested
        assert await owner.heartbeat(STEP, claim.token)
        assert (await other.claim_or_hit(STEP)).outcome == "held"
    assert await owner.commit(result(), claim.token)


async def test_a_lapsed_lease_is_taken_over_and_the_late_commit_fenced(
    client: aioredis.Redis, settings: Settings
) -> None:
    slow, quick = board(client, settings, "slow"), board(client, settings, "quick")
    stale = await slow.claim_or_hit(STEP)

    async def taken_over() -> bool:
        return (await quick.claim_or_hit(STEP)).outcome == "won"

    assert await wait_until_async_bool(taken_over)
    assert not await slow.heartbeat(STEP, stale.token)  # it has lost the step
    assert not await slow.commit(result(), stale.token)  # fenced: nothing written
    assert await StepIndex(client, Keys(settings.redis_prefix)).get(STEP) is None


async def wait_until_async_bool(check: Callable[[], Awaitable[bool]]) -> bool:
    """Poll an async check until it holds (True) or ten leases have passed (False)."""
    deadline = asyncio.get_running_loop().time() + 10 * LEASE_S
    while asyncio.get_running_loop().time() < deadline:
        if await check():
            return True
        await asyncio.sleep(LEASE_S / 10)
    return False


async def test_a_result_is_never_overwritten(client: aioredis.Redis, settings: Settings) -> None:
    index = StepIndex(client, Keys(settings.redis_prefix))
    await index.put_if_absent(result())
    late = board(client, settings, "late")
    # a claim cannot even be made on a computed step; a forged token commits nothing either
    assert (await late.claim_or_hit(STEP)).outcome == "hit"
    assert not await late.commit(StepEntry(STEP, "bafkreiother", "d" * 64, 1, "text/plain"), "late:forged")
    assert await index.get(STEP) == result()


async def test_attempts_run_out_with_the_last_error(client: aioredis.Redis, settings: Settings) -> None:
    worker = board(client, settings, "w", attempts=2)
    for attempt in (1, 2):
        claim = await worker.claim_or_hit(STEP)
        assert (claim.outcome, claim.detail) == ("won", str(attempt))
        await worker.release(STEP, claim.token, f"boom {attempt}")
    exhausted = await worker.claim_or_hit(STEP)
    assert (exhausted.outcome, exhausted.detail) == ("failed", "boom 2")


async def test_commit_and_release_publish_a_notice(client: aioredis.Redis, settings: Settings) -> None:
    keys = Keys(settings.redis_prefix)
    pubsub = client.pubsub()
    await pubsub.subscribe(keys.notices)
    worker = board(client, settings, "w")
    claim = await worker.claim_or_hit(STEP)
    await worker.commit(result(), claim.token)
    messages: list[bytes | str] = []

    async def noticed() -> bool:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if message:
            messages.append(message["data"])
        return bool(messages)

    assert await wait_until_async_bool(noticed)
    assert messages[0] in (f"step:{STEP}", f"step:{STEP}".encode())
    await pubsub.aclose()  # type: ignore[no-untyped-call]
