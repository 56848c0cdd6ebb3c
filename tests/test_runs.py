"""Runs end to end on the node's own executor: events, provenance, verification, cancel, resume."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node.config import Settings
from node.errors import NotFound
from node.executor.planner import Plan, Step
from node.executor.provenance import RunFacts, verify_provenance
from node.executor.recipe import builtin_recipe, parse_recipe
from node.executor.run_manager import Submission, finish_id
from node.http.appkeys import NODE
from node.identity import NodeIdentity
from node.pixels.imaging import png_bytes
from node.records import RecordError, jcs, sign_record, verify_record
from node.store.cid import leaf_cid
from node.store.errors import ContentNotFound
from node.sync.index import ContentEntry, StepEntry
from node.testing import NodeProcess
from tests.helpers import Client, NodeClient, pid_alive, slow_recipe, wait_until_async

RNG = np.random.default_rng(3)


async def put_bytes(client: Client, data: bytes) -> ContentEntry:
    return (await client.app[NODE].store.put_bytes(data, max_size=10**9)).entry


async def submit(
    client: Client, recipe_text: str | None, effect: str = "dog", pixels: np.ndarray | None = None
) -> str:
    image = await put_bytes(
        client, png_bytes(pixels if pixels is not None else RNG.integers(0, 256, (32, 32, 3), np.uint8))
    )
    recipe = parse_recipe(recipe_text) if recipe_text else builtin_recipe(effect)
    recipe_entry = await put_bytes(client, (recipe_text or effect).encode())
    source = next(node.id for node in recipe.nodes if node.type == "SOURCE")
    record = await client.app[NODE].run_manager.submit(
        Submission(recipe, recipe_entry, {source: image.content_id}, owner="admin", output_name="out")
    )
    return str(record["run_id"])


async def events(client: Client, run_id: str) -> list[dict[str, Any]]:
    stream: Any = await client.app[NODE].redis.xrange(client.app[NODE].keys.events(run_id))
    return [{"kind": fields["kind"], **json.loads(fields["data"])} for _, fields in stream]


async def test_run_completes_with_events_and_provenance(client: Client) -> None:
    """A submitted run plans, renders and completes; its events come in order; it has provenance."""
    run_id = await submit(client, None)
    record: Mapping[str, Any] = await client.app[NODE].run_manager.wait(run_id)
    assert record["status"] == "completed", record
    assert record["output"]["cid"] and record["provenance_cid"]
    kinds = [event["kind"] for event in await events(client, run_id)]
    assert kinds == ["run_queued", "step_started", "step_finished", "progress", "run_completed"]
    verdict = await verify_provenance(
        client.app[NODE].ipfs, record["provenance_cid"], {client.app[NODE].identity.node_id}
    )
    assert verdict.ok, verdict.problems
    async with client.app[NODE].ipfs.cat(record["provenance_cid"]) as chunks:
        provenance = json.loads(b"".join([chunk async for chunk in chunks]))
    assert provenance["run_id"] == run_id and provenance["rendered_by"] == "admin"
    assert provenance["output"]["name"] == "out" and provenance["output"]["cid"] == record["output"]["cid"]
    assert [effect["name"] for effect in provenance["effects"]] == ["dog"]
    assert set(provenance["infrastructure"]) == {"software", "hardware"}
    assert len(provenance["receipts"]) == 1


async def _tampered(client: Client, change: Any, resign: bool) -> str:
    """A copy of a real provenance record with ``change`` applied, re-signed or not."""
    run_id = await submit(client, None, effect="invert")
    record: Mapping[str, Any] = await client.app[NODE].run_manager.wait(run_id)
    async with client.app[NODE].ipfs.cat(record["provenance_cid"]) as chunks:
        provenance = json.loads(b"".join([chunk async for chunk in chunks]))
    change(provenance)
    writer = client.app[NODE].writer
    if resign:
        return await writer.put(provenance)
    return (await put_bytes(client, jcs(provenance))).cid


@pytest.mark.parametrize(
    ("change", "resign", "problem"),
    [
        (lambda p: p.update(rendered_by="mallory"), False, "signature does not match"),
        (lambda p: p["output"].update(name="other"), False, "signature does not match"),
        (lambda p: p.update(signature=p["signature"][:-4] + "AAA="), False, "signature"),
        (lambda p: p["output"].update(sha3_256="0" * 64), True, "hashes to"),
        (lambda p: p.update(receipts=[p["infrastructure"]["software"]]), True, "not artdag/step-receipt"),
        (lambda p: p.update(receipts=[]), True, "receipts do not match the plan"),
        (lambda p: p["plan"].update(plan_id="0" * 64), True, "record says"),
        (lambda p: p["output"].update(size=1), True, "bytes, record says 1"),
    ],
)
async def test_provenance_fails_after_any_alteration(
    client: Client, change: Any, resign: bool, problem: str
) -> None:
    """Altering a field without re-signing, the signature, or (re-signed) a hash or a receipt
    makes verification fail, saying what is wrong."""
    cid = await _tampered(client, change, resign)
    verdict = await verify_provenance(client.app[NODE].ipfs, cid, {client.app[NODE].identity.node_id})
    assert not verdict.ok
    assert any(problem in line for line in verdict.problems), verdict.problems


async def test_altered_receipt_fails(client: Client) -> None:
    """A receipt whose contents were changed after signing fails, and so does its provenance."""
    run_id = await submit(client, None, effect="invert")
    record: Mapping[str, Any] = await client.app[NODE].run_manager.wait(run_id)
    ipfs = client.app[NODE].ipfs
    async with ipfs.cat(record["provenance_cid"]) as chunks:
        provenance = json.loads(b"".join([chunk async for chunk in chunks]))
    async with ipfs.cat(provenance["receipts"][0]) as chunks:
        receipt = json.loads(b"".join([chunk async for chunk in chunks]))
    receipt["step"] = "someone-else"
    provenance["receipts"] = [(await put_bytes(client, jcs(receipt))).cid]
    cid = await client.app[NODE].writer.put(provenance)
    verdict = await verify_provenance(ipfs, cid, {client.app[NODE].identity.node_id})
    assert any("receipt" in line and "signature does not match" in line for line in verdict.problems)


async def test_untrusted_signer_fails(client: Client) -> None:
    run_id = await submit(client, None, effect="invert")
    record: Mapping[str, Any] = await client.app[NODE].run_manager.wait(run_id)
    stranger = NodeIdentity(Ed25519PrivateKey.generate())
    verdict = await verify_provenance(client.app[NODE].ipfs, record["provenance_cid"], {stranger.node_id})
    assert not verdict.ok and "not trusted" in verdict.problems[0]


def test_signed_records_round_trip() -> None:
    """sign_record gives canonical bytes that verify_record accepts; one flipped byte fails."""
    identity = NodeIdentity(Ed25519PrivateKey.generate())
    data = sign_record(identity, {"kind": "test", "n": 1.5, "text": "é"})
    assert verify_record(data, {identity.node_id})["n"] == 1.5
    with pytest.raises(RecordError, match="signature does not match"):
        verify_record(data.replace(b"1.5", b"2.5"))


SLOW = (  # a step that is surely still running when the test acts: it holds the image 3 s
    "name: slow\ndag:\n  nodes:\n    - {id: src, type: SOURCE, config: {input: true}}\n"
    "    - {id: out, type: EFFECT, config: {effect: wait, seconds: 3}, inputs: [src]}\n  output: out\n"
)


async def test_cancel_stops_the_run_and_its_worker(client: Client) -> None:
    """Cancelling a running run kills its step's process group; the run says cancelled."""
    run_id = await submit(client, SLOW)
    pool = client.app[NODE].pool
    pids = await wait_until_async(lambda: pool.busy_pids, timeout_s=60)
    record = await client.app[NODE].run_manager.cancel(run_id)
    assert record["status"] == "cancelled"
    await wait_until_async(lambda: not any(pid_alive(pid) for pid in pids))
    assert (await events(client, run_id))[-1]["kind"] == "run_cancelled"


async def test_restart_mid_run_finishes_the_run(client: Client) -> None:
    """A node stopped while a run is computing resumes it on start and completes it."""
    run_id = await submit(client, SLOW)
    runs = client.app[NODE].run_manager
    await wait_until_async(lambda: client.app[NODE].pool.busy_pids, timeout_s=60)
    await runs.close()  # what a shutdown does: the run stays active
    assert (await runs.get(run_id))["status"] == "running"
    assert await runs.resume() == [run_id]
    record = await runs.wait(run_id)
    assert record["status"] == "completed", record


async def test_verify_command(client: Client, settings: Settings) -> None:
    """`python -m node verify CID --trust ID` prints VALID and exits 0; on a forged record
    INVALID, 1; with no trust list it refuses (2) rather than vouch for any key."""
    run_id = await submit(client, None, effect="invert")
    finished: Mapping[str, Any] = await client.app[NODE].run_manager.wait(run_id)
    good = finished["provenance_cid"]
    forged = await _tampered(client, lambda p: p.update(rendered_by="mallory"), False)
    env = {**os.environ, "ARTDAG_IPFS_API": str(settings.ipfs_api), "ARTDAG_DATA_DIR": str(settings.data_dir)}

    node_id = client.app[NODE].identity.node_id

    def verify(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "node", "verify", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, check=False)

    valid, invalid, untrusted = await asyncio.gather(
        asyncio.to_thread(verify, good, "--trust", node_id),
        asyncio.to_thread(verify, forged, "--trust", node_id),
        asyncio.to_thread(verify, good),
    )
    assert valid.returncode == 0 and valid.stdout.startswith("VALID"), valid.stderr
    assert invalid.returncode == 1 and invalid.stdout.startswith("INVALID")
    assert untrusted.returncode == 2 and "--trust" in untrusted.stderr


def test_verify_command_without_a_daemon_says_how_to_name_one(tmp_path: Path) -> None:
    """No node on this data directory and no ARTDAG_IPFS_API: exit 2 with both ways to point
    the command at the running node's daemon."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ARTDAG_")}
    command = [sys.executable, "-m", "node", "verify", "bafkqaaa", "--any-signer"]
    done = subprocess.run(
        command, env={**env, "ARTDAG_DATA_DIR": str(tmp_path)}, capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert f"no node runs on the data directory {tmp_path}" in done.stderr
    assert "ARTDAG_DATA_DIR=/its/data" in done.stderr
    assert "ARTDAG_IPFS_API=http://127.0.0.1:PORT" in done.stderr


async def test_node_process_resumes_a_run_left_unfinished(
    client: Client, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run left running by a node that stopped is finished by the next node process that
    starts on the same Redis and IPFS (resume at start-up, in the node's own wiring)."""
    run_id = await submit(client, slow_recipe(15), pixels=RNG.integers(0, 256, (600, 600, 3), np.uint8))
    runs = client.app[NODE].run_manager
    await wait_until_async(lambda: client.app[NODE].pool.busy_pids, timeout_s=60)

    async def stopped() -> list[str]:  # this node's adoption loop must not start it again
        return []

    monkeypatch.setattr(runs, "resume", stopped)
    await runs.close()
    env = {
        "ARTDAG_REDIS_URL": str(settings.redis_url),
        "ARTDAG_IPFS_API": str(settings.ipfs_api),
        "ARTDAG_REDIS_PREFIX": settings.redis_prefix,
    }
    node = NodeProcess(settings.data_dir.parent / "second-node", env)
    try:
        await asyncio.to_thread(node.wait_healthy)

        async def completed() -> bool:
            return bool((await runs.get(run_id))["status"] == "completed")

        deadline = asyncio.get_running_loop().time() + 90
        while not await completed():
            assert asyncio.get_running_loop().time() < deadline, "the second node did not finish the run"
            await asyncio.sleep(0.1)
    finally:
        node.stop()
    record: Mapping[str, Any] = await runs.get(run_id)
    verdict = await verify_provenance(client.app[NODE].ipfs, record["provenance_cid"])
    assert verdict.ok, verdict.problems
    assert verdict.signer != client.app[NODE].identity.node_id  # finished and signed by the second node


async def test_publish_adds_a_receipt_from_redis(client: Client) -> None:
    """A receipt committed with its step but never added to IPFS (its signer died first) is
    added, pinned and indexed by ``publish``, as a run's finisher does; one recorded nowhere
    is refused."""
    writer, store = client.app[NODE].writer, client.app[NODE].store
    receipt = sign_record(
        client.app[NODE].identity, {"kind": "artdag/step-receipt", "nonce": os.urandom(8).hex()}
    )
    cid = leaf_cid(receipt)
    step = StepEntry(os.urandom(32).hex(), cid, "c" * 64, 1, "image/png", receipt_cid=cid)
    assert await client.app[NODE].steps.put_if_absent(step, receipt)
    with pytest.raises(ContentNotFound):
        await store.resolve(cid)
    await writer.publish([cid])
    assert (await store.resolve(cid)).size == len(receipt)
    async with client.app[NODE].ipfs.cat(cid) as chunks:
        assert b"".join([chunk async for chunk in chunks]) == receipt
    assert await client.app[NODE].ipfs.pin_ls(cid)
    with pytest.raises(NotFound, match="recorded nowhere"):
        await writer.publish([leaf_cid(b"never committed")])


async def test_a_step_done_before_is_reported_once_with_progress(client: Client) -> None:
    """Two SOURCE-fed effects, one computed by an earlier run: the second run reports it as
    cached and the other as finished, each once, each followed by the share of steps done."""
    pixels = RNG.integers(0, 256, (24, 24, 3), np.uint8)
    await client.app[NODE].run_manager.wait(await submit(client, None, effect="invert", pixels=pixels))
    two = (
        "name: two\ndag:\n  nodes:\n    - {id: src, type: SOURCE, config: {input: true}}\n"
        "    - {id: a, type: EFFECT, config: {effect: invert}, inputs: [src]}\n"
        "    - {id: b, type: EFFECT, config: {effect: sepia}, inputs: [a]}\n  output: b\n"
    )
    run_id = await submit(client, two, pixels=pixels)
    assert (await client.app[NODE].run_manager.wait(run_id))["status"] == "completed"
    reported = [
        (event["kind"], event.get("step"), event.get("percent")) for event in await events(client, run_id)
    ]
    assert reported == [
        ("run_queued", None, None), ("step_cached", "a", None), ("progress", None, 50),
        ("step_started", "b", None), ("step_finished", "b", None), ("progress", None, 100),
        ("run_completed", None, None),
    ]  # fmt: skip


async def test_a_step_committed_but_not_yet_reported_is_not_shown_cached_first(client: Client) -> None:
    """The node that finishes a run waits briefly for the report of a step started in this run
    (committed by its node, which reports just after): the step shows as computed, once, and
    never as cached before that."""
    runs, steps = client.app[NODE].run_manager, client.app[NODE].steps
    run_id = f"run-{os.urandom(8).hex()}"
    source_id, step_id = os.urandom(32).hex(), os.urandom(32).hex()
    step = Step(step_id, "out", "EFFECT", "1", {}, (source_id,), {}, 1)
    plan = Plan("plan", "recipe", (Step(source_id, "src", "SOURCE", "1", {}, (), {}, 0), step), step_id)
    entry = StepEntry(step_id, leaf_cid(b"output"), hashlib.sha3_256(b"output").hexdigest(), 6, "image/png")
    await steps.put_if_absent(entry)  # committed by the node computing it ...
    events = client.app[NODE].runs.events
    await events.append(run_id, "step_started", step="out", cache_id=step_id, node="z6Mkother")
    finishing = asyncio.create_task(runs._report_rest(run_id, plan))
    await asyncio.sleep(0.2)  # ... which reports it 200 ms later
    fields = {"step": "out", "cache_id": step_id, "cid": entry.cid, "node": "z6Mkother"}
    await events.report(run_id, 1, "step_finished", fields)
    await finishing
    kinds = [event["kind"] for _, event in await client.app[NODE].runs.events.read(run_id)]
    assert kinds == ["step_started", "step_finished", "progress"]


async def test_the_finisher_renews_its_claim_while_it_writes_the_run_s_records(
    settings: Settings, node_client: NodeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writing a run's provenance and attestation (which hashes its output and every input) may
    outlast the lease: the finisher renews its claim meanwhile, so no other node takes over."""
    client = await node_client(settings.replace(lease=1.0, heartbeat=0.1))
    node = client.app[NODE]
    attest = node.run_manager._attest
    held: list[bool] = []

    async def slowly(facts: RunFacts, provenance_cid: str, finished: str) -> str:
        key = node.keys.claim(finish_id(facts.run_id))
        until = time.monotonic() + 3.0  # three leases: as hashing a large input may take
        while time.monotonic() < until:
            held.append(bool(await node.redis.exists(key)))
            await asyncio.sleep(0.05)  # the slow work itself, not a wait for anything
        return await attest(facts, provenance_cid, finished)

    monkeypatch.setattr(node.run_manager, "_attest", slowly)
    run_id = await submit(client, None, effect="invert")
    record = await node.run_manager.wait(run_id)
    assert record["status"] == "completed" and record["attestation_cid"]
    assert len(held) > 20 and all(held)
