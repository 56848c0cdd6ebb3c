"""Kubo's datastore, chosen by measurement: flatfs (blocks in files) against pebble.

Two Kubo daemons run side by side, each on a repository initialised the way the node does it
(``node.services.ipfs_process``, which runs ``ipfs init --empty-repo --algorithm=ed25519
--profile=DATASTORE_PROFILE`` and writes the node's config), one with the profile ``flatfs``
(Kubo's default: a file per block, everything else in leveldb) and one with ``pebbleds``
(everything in pebble); ``--profiles`` may name others (``flatfs-pebbleds``). Each round, on
each daemon in turn (the order alternates), through the node's own RPC client
(``node.store.ipfs.IpfsClient``: the node's import settings):

- records: RECORDS small records (1-2 KB of JSON, as the node's signed records) added with pin
  one per call (as a step's receipt is), then RECORDS more added 100 per call (as the state's
  documents are), then every one read back with ``cat`` (offline, as the node reads its own);
- a 64 MB file (``--file-mb``) of random bytes: added unpinned, then pinned (as an upload is),
  then read back with ``cat``;
- the repository's size on disk (allocated blocks, the whole repository) after the adds;
- ``pin/rm`` of each record and of the file (as deletions do), then ``repo/gc`` and the size
  of the repository after it (each round adds new bytes, and removes them all again); the
  daemon's RSS at the end of the round.

Prints the median of the rounds per daemon, and the ratio of each figure to flatfs's in the
same run (all figures are lower-is-better: time or space; ratio < 1: the other datastore wins).

    .venv/bin/python -m bench.datastore [--rounds 3] [--records 500] [--file-mb 64]
        [--profiles flatfs,pebbleds]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import aiohttp

from bench.procs import rss_kib
from bench.store import write_random_file
from node import services
from node.services import IPFS_START_DEADLINE_S, IpfsPorts, ManagedProcess, SwarmSettings
from node.store.ipfs import IpfsClient

CHUNK = 1024 * 1024
BATCH = 100  # records per call in the batched add
BASELINE = "flatfs"


@dataclass
class Daemon:
    """One Kubo on a repository of one datastore profile."""

    profile: str
    repo: Path
    process: ManagedProcess
    ipfs: IpfsClient


def record() -> bytes:
    """A record shaped like the node's signed ones: canonical JSON of 1-2 KB, unique."""
    body: dict[str, Any] = {
        "type": "step_receipt",
        "cache_id": os.urandom(32).hex(),
        "cid": "bafkrei" + os.urandom(26).hex()[:52],
        "inputs": [os.urandom(32).hex() for _ in range(2 + secrets.randbelow(7))],
        "node": "z6Mk" + os.urandom(22).hex(),
        "signature": os.urandom(64).hex(),
        "runtime": {"numpy": "2.0.0", "pillow": "11.0.0", "ffmpeg": "6.1.1"},
    }
    data = json.dumps(body, sort_keys=True, separators=(",", ":"))
    pad = max(0, 1000 + secrets.randbelow(1001) - len(data) - 12)
    return json.dumps({**body, "note": "x" * pad}, sort_keys=True, separators=(",", ":")).encode()


def disk_bytes(path: Path) -> int:
    """Bytes the files under ``path`` occupy on disk (allocated blocks)."""
    total = 0
    for folder, _, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(folder, name)).st_blocks * 512
            except FileNotFoundError:  # a compaction removed it meanwhile
                continue
    return total


@contextmanager
def kubo(profile: str, scratch: Path) -> Iterator[tuple[Path, ManagedProcess, str]]:
    """A Kubo daemon on a new repository of ``profile``, set up as the node sets up its own."""
    repo = scratch / profile / "ipfs"
    ports = IpfsPorts.pick()
    with mock.patch.object(services, "DATASTORE_PROFILE", profile):
        process = services.ipfs_process(repo, ports, scratch / profile / "logs", SwarmSettings())
    spec = (repo / "datastore_spec").read_text()
    wanted = "pebble" if profile == "pebbleds" else "flatfs"
    if wanted not in spec:
        raise SystemExit(f"repository of profile {profile} has datastore {spec}")
    process.launch()
    try:
        process.wait_ready(IPFS_START_DEADLINE_S)
        yield repo, process, f"http://127.0.0.1:{ports.api}"
    finally:
        process.stop()


async def file_chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as handle:
        while chunk := await asyncio.to_thread(handle.read, CHUNK):
            yield chunk


async def timed(action: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = await action()
    return time.perf_counter() - started, result


async def one_round(daemon: Daemon, records: list[bytes], big: Path, big_size: int) -> dict[str, float]:
    """Every operation once on ``daemon``; figure name -> value (ms, s or MB)."""
    ipfs = daemon.ipfs
    half = len(records) // 2
    figures: dict[str, float] = {}

    async def add_one_per_call() -> list[str]:
        return [(await ipfs.add_many([data], pin=True))[0].cid for data in records[:half]]

    async def add_batched() -> list[str]:
        cids = []
        for start in range(half, len(records), BATCH):
            cids += [item.cid for item in await ipfs.add_many(records[start : start + BATCH], pin=True)]
        return cids

    seconds, single = await timed(add_one_per_call)
    figures["records add+pin, 1 per call (ms/record)"] = 1000 * seconds / half
    seconds, batched = await timed(add_batched)
    figures[f"records add+pin, {BATCH} per call (ms/record)"] = 1000 * seconds / (len(records) - half)
    cids: list[str] = single + batched

    async def cat_records() -> None:
        for cid, data in zip(cids, records, strict=True):
            assert await ipfs.cat_all(cid, 4096) == data

    seconds, _ = await timed(cat_records)
    figures["records cat (ms/record)"] = 1000 * seconds / len(cids)

    seconds, added = await timed(lambda: ipfs.add(file_chunks(big), pin=False))
    figures["file add (s)"] = seconds
    seconds, _ = await timed(lambda: ipfs.pin_add(added.cid))
    figures["file pin/add (ms)"] = 1000 * seconds

    async def cat_file() -> int:
        received = 0
        async with ipfs.cat(added.cid) as chunks:
            async for chunk in chunks:
                received += len(chunk)
        return received

    seconds, received = await timed(cat_file)
    assert received == big_size
    figures["file cat (s)"] = seconds
    figures["repo on disk after the adds (MB)"] = disk_bytes(daemon.repo) / 1e6

    async def unpin_records() -> None:
        for cid in cids:
            await ipfs.pin_rm(cid)

    seconds, _ = await timed(unpin_records)
    figures["records pin/rm (ms/record)"] = 1000 * seconds / len(cids)
    seconds, _ = await timed(lambda: ipfs.pin_rm(added.cid))
    figures["file pin/rm (ms)"] = 1000 * seconds
    figures["repo/gc (s)"], _ = await timed(lambda: ipfs.call("repo/gc", timeout_s=600))
    figures["repo on disk after rm + gc (MB)"] = disk_bytes(daemon.repo) / 1e6
    pid = daemon.process.pid
    assert pid is not None
    figures["kubo RSS at the end (MiB)"] = rss_kib(pid) / 1024
    return figures


async def measure(
    daemons: list[Daemon], args: argparse.Namespace, scratch: Path
) -> dict[str, dict[str, list[float]]]:
    """Every round on every daemon; profile -> figure -> values."""
    results: dict[str, dict[str, list[float]]] = {daemon.profile: {} for daemon in daemons}
    for index in range(args.rounds):
        records = [record() for _ in range(2 * args.records)]
        big = scratch / f"round{index}.bin"
        await asyncio.to_thread(write_random_file, big, args.file_mb * CHUNK)
        order = daemons if index % 2 == 0 else daemons[::-1]
        for daemon in order:
            figures = await one_round(daemon, records, big, args.file_mb * CHUNK)
            for key, value in figures.items():
                results[daemon.profile].setdefault(key, []).append(value)
            print(f"round {index + 1} {daemon.profile}: records add 1/call "
                  f"{figures['records add+pin, 1 per call (ms/record)']:.2f} ms, file add "
                  f"{figures['file add (s)']:.2f} s", flush=True)  # fmt: skip
        big.unlink()
    return results


def report(results: dict[str, dict[str, list[float]]], rounds: int) -> None:
    profiles = list(results)
    medians = {profile: {key: statistics.median(values) for key, values in figures.items()}
               for profile, figures in results.items()}  # fmt: skip
    keys = list(results[profiles[0]])
    width = max(len(key) for key in keys) + 2
    others = [profile for profile in profiles if profile != BASELINE]
    column = max(12, *(len(profile) + 2 for profile in profiles))
    ratio_column = max(16, *(len(profile) + len(BASELINE) + 3 for profile in others))
    header = "".join(f"{profile:>{column}}" for profile in profiles)
    ratios = "".join(f"{profile + '/' + BASELINE:>{ratio_column}}" for profile in others)
    print(f"\nmedian of {rounds} rounds (lower is better everywhere)")
    print(f"{'':<{width}}{header}{ratios}")
    for key in keys:
        values = "".join(f"{medians[profile][key]:>{column}.2f}" for profile in profiles)
        base = medians[BASELINE][key] if BASELINE in medians else 0.0
        line = "".join(
            f"{medians[profile][key] / base:>{ratio_column}.2f}" if base else f"{'-':>{ratio_column}}"
            for profile in others
        )
        print(f"{key:<{width}}{values}{line}")
    print("\nall rounds:")
    for key in keys:
        rounds_by_profile = (
            f"{profile} " + ", ".join(f"{value:.2f}" for value in results[profile][key])
            for profile in profiles
        )
        print(f"  {key:<{width}}" + " | ".join(rounds_by_profile))


async def run(
    args: argparse.Namespace, scratch: Path, started: list[tuple[str, Path, ManagedProcess, str]]
) -> None:
    timeout = aiohttp.ClientTimeout(total=None, sock_read=600)
    async with aiohttp.ClientSession(timeout=timeout, read_bufsize=CHUNK) as session:
        daemons = [
            Daemon(profile, repo, process, IpfsClient(api, session, timeout_s=600))
            for profile, repo, process, api in started
        ]
        fresh = ", ".join(f"{daemon.profile} {disk_bytes(daemon.repo) / 1e6:.2f} MB" for daemon in daemons)
        payload = (2 * args.records * 1.5e3 + args.file_mb * CHUNK) / 1e6
        print(f"new repositories on disk: {fresh}; each round adds about {payload:.0f} MB", flush=True)
        results = await measure(daemons, args, scratch)
    report(results, args.rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--records", type=int, default=500, help="records per way of adding (two ways)")
    parser.add_argument("--file-mb", type=int, default=64)
    parser.add_argument(
        "--profiles", default=f"{BASELINE},pebbleds", help="Kubo init profiles, comma-separated"
    )
    args = parser.parse_args()
    profiles = [profile.strip() for profile in args.profiles.split(",") if profile.strip()]
    with tempfile.TemporaryDirectory() as scratch_dir, ExitStack() as stack:
        scratch = Path(scratch_dir)
        started = []
        for profile in profiles:
            repo, process, api = stack.enter_context(kubo(profile, scratch))
            started.append((profile, repo, process, api))
        asyncio.run(run(args, scratch, started))


if __name__ == "__main__":
    main()
