"""The cost of a node's published state as its indexes grow: export, add to IPFS, restore, merge.

For each N, under a fresh key prefix, Redis is filled with N step entries (random cache ids,
content ids and CIDs, a receipt CID and the computing node, written with the step index's own
script), N/4 content entries (``ContentIndex.put``, one owner) and N/10 completed runs shaped
like ``RunManager.submit``'s records (their plans of three steps, the ``runs`` listing, and the
runs listed on their input and output content). Then, each timed alone:

(1) ``Snapshot.export()``: the three index documents (runs, steps, contents) and their sizes;
(2) baseline for (1): the same Redis reads with no JSON and no entry objects: pipelined ZRANGE
    of the listings, HGETALL of the step hashes, MGET of the run and plan records, HGETALL and
    SMEMBERS of the content hashes and sets, in the same batches; the ratio export/baseline is
    the cost of the Python work around the reads;
(3) ``IpfsClient.add_many`` of the three documents with pins, on the embedded daemon;
(4) ``Snapshot.restore()`` of the documents into an empty prefix (what a node on an empty Redis
    does at start);
(5) a peer merge as ``PeerSync`` does it: ``read_steps(read_index("steps", data))`` in a thread
    (the parse time is shown apart), then ``PeerSteps.put_many`` into another empty prefix.

Every prefix's keys are deleted afterwards (SCAN + DEL). Each size is measured ``--repeat``
times, each on a fresh prefix; the figures are the median (the daemons: Kubo and Redis
embedded, as ``make run`` starts them).

    .venv/bin/python -m bench.state [--sizes 1000,10000,50000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis
import uvloop

from bench.report import print_medians
from node.config import Settings
from node.federation.peers import PeerSteps
from node.federation.snapshot import BATCH, Snapshot, read_index, read_steps
from node.identity import node_id_for
from node.services import EmbeddedServices
from node.store.cid import _normalized_cid, leaf_cid
from node.store.ipfs import IpfsClient
from node.sync.connection import connect
from node.sync.index import _PUT_STEP_IF_ABSENT, ContentEntry, ContentIndex, StepEntry, step_write
from node.sync.keys import Keys

NODE_ID = node_id_for(bytes(range(32)))
PEER_ID = node_id_for(bytes(range(32, 64)))
RUNTIME = {"numpy": "2.0.0", "pillow": "11.0.0", "zlib": "1.3.1", "ffmpeg": "6.1.1"}
FILL_BATCH = 1000
PUT_CONCURRENCY = 50
CID_PREFIX = bytes([0x01, 0x55, 0x12, 0x20])  # CIDv1, raw, sha2-256, 32 bytes


def hex64() -> str:
    return os.urandom(32).hex()


def cid_of(data: bytes) -> str:
    """``leaf_cid(data)``, spelled here: ``leaf_cid`` takes ~10 times the sha256 it wraps, and
    a fill at N = 50,000 makes over 100,000 CIDs (``run`` checks both agree)."""
    digest = hashlib.sha256(data).digest()
    return "b" + base64.b32encode(CID_PREFIX + digest).decode().lower().rstrip("=")


def cid() -> str:
    return cid_of(os.urandom(16))


@dataclass
class Filled:
    """The ids written under one prefix (for the baseline's reads)."""

    cache_ids: list[str]
    content_ids: list[str]
    run_ids: list[str]
    plan_ids: list[str]


async def fill_steps(client: aioredis.Redis, keys: Keys, count: int) -> list[str]:
    script = client.register_script(_PUT_STEP_IF_ABSENT)
    cache_ids = [hex64() for _ in range(count)]
    for start in range(0, count, FILL_BATCH):
        async with client.pipeline(transaction=False) as pipe:
            for cache_id in cache_ids[start : start + FILL_BATCH]:
                entry = StepEntry(cache_id, cid(), hex64(), 4096, "image/png", cid(), NODE_ID)
                names, args = step_write(keys, entry, b"")
                await script(keys=names, args=args, client=pipe)
            await pipe.execute()
    return cache_ids


async def fill_contents(client: aioredis.Redis, keys: Keys, count: int) -> list[str]:
    index = ContentIndex(client, keys)
    entries = [ContentEntry(hex64(), cid(), 4096, "image/png") for _ in range(count)]
    for start in range(0, count, PUT_CONCURRENCY):
        batch = entries[start : start + PUT_CONCURRENCY]
        await asyncio.gather(*(index.put(entry, owner="bench") for entry in batch))
    return [entry.content_id for entry in entries]


def plan_record(plan_id: str, source: str, cache_ids: list[str]) -> dict[str, Any]:
    """A plan of one SOURCE and two effects, as ``Plan.record`` writes it."""
    steps = [
        {"cache_id": source, "node_id": "src", "type": "SOURCE", "type_version": "1",
         "config": {"input": True}, "inputs": [], "runtime": {}, "level": 0},
    ]  # fmt: skip
    previous = source
    for level, (name, cache_id) in enumerate(zip(("invert", "sepia"), cache_ids, strict=True), start=1):
        config = {"effect": name, "effect_version": "1"}
        steps.append(
            {"cache_id": cache_id, "node_id": f"n{level}", "type": "EFFECT", "type_version": "1",
             "config": config, "inputs": [previous], "runtime": RUNTIME, "level": level}
        )  # fmt: skip
        previous = cache_id
    return {"plan_id": plan_id, "recipe_id": hex64(), "output": previous, "steps": steps}


def run_record(run_id: str, plan_id: str, source: str, output: str) -> dict[str, Any]:
    """A finished run, as ``RunManager.submit`` and ``_finish`` leave it."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "run_id": run_id,
        "status": "completed",
        "recipe": {"name": "bench", "cid": cid()},
        "recipe_content_id": hex64(),
        "plan_id": plan_id,
        "plan_cid": cid(),
        "inputs": [{"name": "src", "content_id": source}],
        "owner": "bench",
        "output_name": "bench-output",
        "created": now,
        "updated": now,
        "output": {"cid": cid(), "content_id": output, "media_type": "image/png"},
        "provenance_cid": cid(),
        "error": None,
    }


async def fill_runs(
    client: aioredis.Redis, keys: Keys, count: int, cache_ids: list[str], content_ids: list[str]
) -> tuple[list[str], list[str]]:
    run_ids, plan_ids = [], []
    for start in range(0, count, FILL_BATCH):
        async with client.pipeline(transaction=False) as pipe:
            for index in range(start, min(count, start + FILL_BATCH)):
                run_id, plan_id = f"run-{os.urandom(8).hex()}", hex64()
                source = content_ids[(2 * index) % len(content_ids)]
                output = content_ids[(2 * index + 1) % len(content_ids)]
                steps = [cache_ids[(2 * index + step) % len(cache_ids)] for step in (0, 1)]
                plan = plan_record(plan_id, source, steps)
                pipe.set(keys.plan(plan_id), json.dumps(plan))
                pipe.set(keys.run(run_id), json.dumps(run_record(run_id, plan_id, source, output)))
                pipe.zadd(keys.runs, {run_id: time.time()})
                pipe.sadd(keys.content_runs(source), run_id)
                pipe.sadd(keys.content_runs(output), run_id)
                run_ids.append(run_id)
                plan_ids.append(plan_id)
            await pipe.execute()
    return run_ids, plan_ids


async def fill(client: aioredis.Redis, keys: Keys, size: int) -> Filled:
    cache_ids = await fill_steps(client, keys, size)
    content_ids = await fill_contents(client, keys, max(2, size // 4))
    run_ids, plan_ids = await fill_runs(client, keys, max(1, size // 10), cache_ids, content_ids)
    return Filled(cache_ids, content_ids, run_ids, plan_ids)


async def redis_reads(client: aioredis.Redis, keys: Keys, filled: Filled) -> int:
    """What ``export`` reads from Redis, in its batches, with nothing done with it; the replies."""
    replies = 0
    async with client.pipeline(transaction=False) as pipe:
        for listing in (keys.steps, keys.runs, keys.contents, keys.recipes):
            pipe.zrange(listing, 0, -1, withscores=True)
        pipe.hgetall(keys.assets)
        replies += len(await pipe.execute())
    for start in range(0, len(filled.cache_ids), BATCH):
        async with client.pipeline(transaction=False) as pipe:
            for cache_id in filled.cache_ids[start : start + BATCH]:
                pipe.hgetall(keys.step(cache_id))
            replies += len(await pipe.execute())
    for start in range(0, len(filled.run_ids), BATCH):
        replies += len(
            await client.mget([keys.run(run_id) for run_id in filled.run_ids[start : start + BATCH]])
        )
        plans = [keys.plan(plan_id) for plan_id in filled.plan_ids[start : start + BATCH]]
        replies += len(await client.mget(plans))
    for start in range(0, len(filled.content_ids), BATCH):
        async with client.pipeline(transaction=False) as pipe:
            for content_id in filled.content_ids[start : start + BATCH]:
                pipe.hgetall(keys.content(content_id))
                pipe.smembers(keys.content_owners(content_id))
                pipe.smembers(keys.content_runs(content_id))
            replies += len(await pipe.execute())
    return replies


async def delete_prefix(client: aioredis.Redis, prefix: str) -> None:
    batch: list[str] = []
    async for key in client.scan_iter(match=f"{prefix}*", count=1000):
        batch.append(key)
        if len(batch) == FILL_BATCH:
            await client.delete(*batch)
            batch = []
    if batch:
        await client.delete(*batch)


def megabytes(data: bytes) -> str:
    return f"{len(data) / 1e6:.1f} MB" if len(data) >= 100_000 else f"{len(data) / 1e3:.1f} kB"


async def measure(client: aioredis.Redis, ipfs: IpfsClient, size: int) -> tuple[dict[str, float], str]:
    """Fill one prefix with ``size`` steps, time the five operations; seconds of each, and the
    documents' sizes."""
    prefix = f"bench-state-{size}-{os.urandom(4).hex()}:"
    own, restored, merged = Keys(prefix), Keys(f"{prefix}restore:"), Keys(f"{prefix}peer:")
    try:
        filled = await fill(client, own, size)

        started = time.perf_counter()
        documents = await Snapshot(client, own, NODE_ID).export()
        export_s = time.perf_counter() - started

        started = time.perf_counter()
        await redis_reads(client, own, filled)
        reads_s = time.perf_counter() - started

        started = time.perf_counter()
        added = await ipfs.add_many(list(documents.values()), pin=True)
        add_s = time.perf_counter() - started

        _normalized_cid.cache_clear()  # cold, as on a node reading CIDs it has not seen
        started = time.perf_counter()
        counts = await Snapshot(client, restored, NODE_ID).restore(documents)
        restore_s = time.perf_counter() - started
        assert counts.steps == size, counts

        data = documents["steps"]
        _normalized_cid.cache_clear()
        started = time.perf_counter()
        entries = await asyncio.to_thread(lambda: read_steps(read_index("steps", data)))
        parse_s = time.perf_counter() - started
        await PeerSteps(client, merged).put_many(entries, PEER_ID)
        merge_s = time.perf_counter() - started
        assert len(entries) == size, len(entries)
    finally:
        await delete_prefix(client, own.prefix)  # the others start with it
    for item in added:
        await ipfs.pin_rm(item.cid)
    sizes = ", ".join(f"{name} {megabytes(body)}" for name, body in documents.items())
    figures = {
        "export": export_s,
        "redis reads alone (baseline)": reads_s,
        "ratio export/reads": export_s / reads_s,
        "ipfs add": add_s,
        "restore": restore_s,
        "peer merge": merge_s,
        "peer merge: parse": parse_s,
    }
    return figures, sizes


async def run(settings: Settings, sizes: list[int], repeats: int) -> None:
    assert cid_of(b"artdag") == leaf_cid(b"artdag")
    client = connect(str(settings.redis_url))
    timeout = aiohttp.ClientTimeout(total=None)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            ipfs = IpfsClient(str(settings.ipfs_api), session, timeout_s=600)
            for size in sizes:
                series: dict[str, list[float]] = {}
                for _ in range(repeats):
                    figures, documents = await measure(client, ipfs, size)
                    for key, value in figures.items():
                        series.setdefault(key, []).append(value)
                print_medians(f"N={size} (documents: {documents}), seconds, median of {repeats}", series)
                print(flush=True)
    finally:
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="1000,10000,50000", help="numbers of step entries, comma-separated"
    )
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",") if size.strip()]
    with (
        tempfile.TemporaryDirectory() as scratch,
        EmbeddedServices(Settings(data_dir=Path(scratch) / "daemons", log_level="WARNING")) as services,
    ):
        uvloop.run(run(services.settings, sizes, args.repeat))


if __name__ == "__main__":
    main()
