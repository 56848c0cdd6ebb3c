"""The local scheduler on real daemons: renders, reuses, stays deterministic, cancels, fails."""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import numpy as np
import pytest
import redis.asyncio as aioredis
from PIL import Image

from node.config import Settings
from node.executor.errors import StepFailed, StepTimeout
from node.executor.planner import make_plan
from node.executor.pool import WorkerPool
from node.executor.recipe import builtin_recipe, parse_recipe
from node.executor.scheduler import LocalClaims, Scheduler
from node.pixels.effects import EFFECTS
from node.pixels.imaging import png_bytes
from node.pixels.params import normalize_params
from node.store.cid import leaf_cid
from node.store.content import ContentStore
from node.store.gone import Gone
from node.store.ipfs import IpfsClient
from node.store.local_cache import LocalCache
from node.store.thumbnail_cache import Thumbnails
from node.sync.connection import connect
from node.sync.index import ContentEntry, ContentIndex, StepEntry, StepIndex
from node.sync.keys import Keys
from tests.helpers import pid_alive, slow_recipe, wait_until_async

RNG = np.random.default_rng(11)
IMAGE = RNG.integers(0, 256, size=(40, 50, 3), dtype=np.uint8)


class Rig:
    """A scheduler with its store, indexes and pool, plus the events it emitted."""

    def __init__(
        self, settings: Settings, client: aioredis.Redis, ipfs: IpfsClient, timeout_s: float = 60
    ) -> None:
        keys = Keys(settings.redis_prefix)
        self.ipfs = ipfs
        self.index = ContentIndex(client, keys)
        self.steps = StepIndex(client, keys)
        self.cache = LocalCache(settings.data_dir / "cache", ipfs)
        thumbnails = Thumbnails(settings.data_dir / "thumbnails", self.cache)
        self.store = ContentStore(ipfs, self.index, client, keys, gone=Gone(self.cache, thumbnails))
        self.pool = WorkerPool(2)
        self.scheduler = Scheduler(
            store=self.store,
            steps=self.steps,
            cache=self.cache,
            pool=self.pool,
            work_dir=settings.data_dir / "work",
            step_timeout_s=timeout_s,
        )
        self.events: list[dict[str, Any]] = []

    async def emit(self, kind: str, **fields: Any) -> None:
        self.events.append({"kind": kind, **fields})

    def kinds(self) -> list[str]:
        return [event["kind"] for event in self.events]

    async def put_image(self, pixels: np.ndarray) -> ContentEntry:
        return (await self.store.put_bytes(png_bytes(pixels), max_size=10**9)).entry

    async def read_image(self, entry: ContentEntry) -> np.ndarray:
        async with self.ipfs.cat(entry.cid) as chunks:
            data = b"".join([chunk async for chunk in chunks])
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.fixture
async def rig(settings: Settings) -> AsyncIterator[Rig]:
    assert settings.redis_url is not None and settings.ipfs_api is not None
    client = connect(settings.redis_url)
    async with aiohttp.ClientSession() as session:
        built = Rig(settings, client, IpfsClient(settings.ipfs_api, session))
        yield built
        await built.pool.close()
    await client.aclose()


def reference(effect: str, pixels: np.ndarray, **given: Any) -> np.ndarray:
    params, _ = normalize_params(EFFECTS[effect].params, given)
    apply = EFFECTS[effect].apply
    assert apply is not None
    return apply(pixels, params)


async def test_renders_a_recipe_end_to_end(rig: Rig) -> None:
    """dog on an uploaded image: the output in IPFS equals the effect applied directly."""
    source = await rig.put_image(IMAGE)
    plan = make_plan(builtin_recipe("dog"), "r", {"input": source.content_id})
    output = await rig.scheduler.execute(plan, rig.emit)
    np.testing.assert_array_equal(await rig.read_image(output), reference("dog", IMAGE))
    assert rig.kinds() == ["step_started", "step_finished"]
    assert (await rig.steps.get(plan.output)) is not None
    assert rig.cache.has(output.content_id)  # the output stays materialized for later steps


async def test_second_run_executes_nothing(rig: Rig) -> None:
    """Running a computed plan again reuses every step: only step_cached events, same output."""
    source = await rig.put_image(IMAGE)
    plan = make_plan(builtin_recipe("invert"), "r", {"input": source.content_id})
    first = await rig.scheduler.execute(plan, rig.emit)
    rig.events.clear()
    again = await rig.scheduler.execute(plan, rig.emit)
    assert again.cid == first.cid
    assert rig.kinds() == ["step_cached"]


async def test_identity_is_zero_copy(rig: Rig) -> None:
    """identity's output is its input: same CID, nothing new in the content index."""
    source = await rig.put_image(IMAGE)
    before = (await rig.index.newest(0, 10))[1]
    output = await rig.scheduler.execute(
        make_plan(builtin_recipe("identity"), "r", {"input": source.content_id}), rig.emit
    )
    assert output.cid == source.cid
    assert (await rig.index.newest(0, 10))[1] == before
    assert rig.pool.busy_pids == [] and rig.kinds() == ["step_started", "step_finished"]


MULTI = """
name: multi
dag:
  nodes:
    - {id: a, type: SOURCE, config: {input: true}}
    - {id: b, type: SOURCE, config: {input: true}}
    - {id: small, type: RESIZE, config: {width: 25}, inputs: [b]}
    - {id: soft, type: EFFECT, config: {effect: blur, sigma: 1.5}, inputs: [a]}
    - {id: mixed, type: BLEND, config: {mode: screen, opacity: 0.7}, inputs: [soft, small]}
    - {id: out, type: LAYER, config: {x: 5, y: 4, opacity: 0.5}, inputs: [mixed, small]}
  output: out
"""


async def test_multi_step_recipe_is_byte_identical_on_a_fresh_run(rig: Rig, settings: Settings) -> None:
    """A six-node recipe renders; with an empty step index and new workers (fresh processes)
    the same plan gives the same output CID, byte for byte."""
    a = await rig.put_image(IMAGE)
    b = await rig.put_image(255 - IMAGE)
    plan = make_plan(parse_recipe(MULTI), "r", {"a": a.content_id, "b": b.content_id})
    first = await rig.scheduler.execute(plan, rig.emit)
    assert rig.kinds().count("step_finished") == 4

    assert settings.redis_url is not None
    client = connect(settings.redis_url)
    fresh = Rig(settings.replace(redis_prefix=settings.redis_prefix + "fresh:"), client, rig.ipfs)
    try:
        await fresh.put_image(IMAGE)
        await fresh.put_image(255 - IMAGE)
        second = await fresh.scheduler.execute(plan, fresh.emit)
    finally:
        await fresh.pool.close()
        await client.aclose()
    assert fresh.kinds().count("step_finished") == 4
    assert second.cid == first.cid


async def test_cancel_kills_the_running_step(rig: Rig) -> None:
    """Cancelling a run mid-step kills the worker's process group and records nothing."""
    big = RNG.integers(0, 256, size=(1500, 1500, 3), dtype=np.uint8)
    source = await rig.put_image(big)
    plan = make_plan(parse_recipe(SLOW), "r", {"src": source.content_id})
    task = asyncio.create_task(rig.scheduler.execute(plan, rig.emit))
    pids = await wait_until_async(lambda: rig.pool.busy_pids, timeout_s=60)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_until_async(lambda: not any(pid_alive(pid) for pid in pids))
    assert await rig.steps.get(plan.output) is None


SLOW = slow_recipe(50)


async def test_step_past_its_deadline_fails_and_is_killed(settings: Settings, rig: Rig) -> None:
    """A step over the step timeout fails the run with StepTimeout; its worker is gone."""
    strict = Scheduler(
        store=rig.store, steps=rig.steps, cache=rig.cache, pool=rig.pool,
        work_dir=settings.data_dir / "work", step_timeout_s=0.5,
    )  # fmt: skip
    big = RNG.integers(0, 256, size=(1500, 1500, 3), dtype=np.uint8)
    source = await rig.put_image(big)
    plan = make_plan(parse_recipe(SLOW), "r", {"src": source.content_id})
    with pytest.raises(StepTimeout, match="deadline"):
        await strict.execute(plan, rig.emit)
    assert rig.kinds() == ["step_started", "step_failed"]
    assert rig.pool.busy_pids == []


async def test_a_failing_step_fails_the_plan_with_its_reason(rig: Rig) -> None:
    """Content that is not an image: the step fails with the worker's reason, nothing recorded."""
    source = (await rig.store.put_bytes(b"plain text, not pixels", max_size=10**6)).entry
    plan = make_plan(builtin_recipe("invert"), "r", {"input": source.content_id})
    with pytest.raises(StepFailed, match="input 1 is not an image this node reads"):
        await rig.scheduler.execute(plan, rig.emit)
    assert rig.events[-1]["kind"] == "step_failed"
    assert await rig.steps.get(plan.output) is None


async def test_concurrent_runs_share_a_step(rig: Rig) -> None:
    """Two plans needing the same step at the same time compute it once; the other waits for it."""
    source = await rig.put_image(RNG.integers(0, 256, size=(400, 400, 3), dtype=np.uint8))
    plan = make_plan(builtin_recipe("blur"), "r", {"input": source.content_id})
    other = make_plan(builtin_recipe("blur"), "another-recipe", {"input": source.content_id})
    first, second = await asyncio.gather(
        rig.scheduler.execute(plan, rig.emit), rig.scheduler.execute(other, rig.emit)
    )
    assert first.cid == second.cid
    assert rig.kinds().count("step_started") == 1
    assert rig.kinds().count("step_cached") == 1


class Fenced(LocalClaims):
    """Claims where another node commits each step first, with other bytes (and this node's
    commit is fenced)."""

    def __init__(self, steps: StepIndex, theirs: ContentEntry) -> None:
        super().__init__(steps)
        self._theirs = theirs

    async def commit(self, entry: StepEntry, token: str, receipt: bytes = b"") -> bool:
        theirs = self._theirs
        await self._steps.put_if_absent(
            StepEntry(entry.cache_id, theirs.cid, theirs.content_id, theirs.size, theirs.media_type)
        )
        return False


async def test_a_fenced_step_s_different_output_is_discarded(rig: Rig) -> None:
    """A node fenced after computing records nothing, and its output, differing from the one
    recorded, is unpinned and forgotten; the run goes on with the recorded output."""
    source, theirs = await rig.put_image(IMAGE), await rig.put_image(IMAGE[::-1].copy())
    rig.scheduler.claims = Fenced(rig.steps, theirs)
    plan = make_plan(builtin_recipe("dog"), "r", {"input": source.content_id})
    assert await rig.scheduler.execute(plan, rig.emit) == theirs
    assert rig.kinds() == ["step_started"]  # the node that committed it reports it
    ours = png_bytes(reference("dog", IMAGE))
    assert await rig.index.get(hashlib.sha3_256(ours).hexdigest()) is None
    assert not await rig.ipfs.pin_ls(leaf_cid(ours))
    assert not rig.cache.path_for(hashlib.sha3_256(ours).hexdigest()).exists()  # its file went too
    assert await rig.ipfs.pin_ls(theirs.cid)  # what is recorded stays
