"""Re-execution: another node computes a provenance record's steps again and compares by CID."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
import redis.asyncio as aioredis

from node.config import Settings
from node.http.appkeys import NODE
from node.pixels.imaging import png_bytes
from node.store.errors import ContentNotFound
from tests.conftest import L2_PUBLIC_URL
from tests.helpers import Client, NodeClient, sse, start, upload
from tests.l2_server import TestL2, reexecuted

RNG = np.random.default_rng(27)
RECIPE = """
name: reexec-chain
dag:
  nodes:
    - {id: src, type: SOURCE, config: {input: true}}
    - {id: dark, type: EFFECT, config: {effect: invert}, inputs: [src]}
    - {id: warm, type: EFFECT, config: {effect: sepia}, inputs: [dark]}
    - {id: soft, type: EFFECT, config: {effect: blur, sigma: 1.5}, inputs: [warm]}
  output: soft
"""


def token(settings: Settings) -> str:
    return (settings.data_dir / "admin_token").read_text().strip()


@pytest.fixture
async def node_b(settings: Settings, node_client: NodeClient) -> Client:
    """A second node on the same daemons, with an index of its own (another key prefix)."""
    return await node_client(settings.replace(data_dir=settings.data_dir.parent / "b",
                                              redis_prefix=settings.redis_prefix + "b:"))  # fmt: skip


async def rendered(client: Client, auth: dict[str, str]) -> dict[str, Any]:
    """Render RECIPE on a small random image; the provenance record, with its CID."""
    image = await upload(client, auth, png_bytes(RNG.integers(0, 256, (24, 32, 3), np.uint8)))
    recipe = await (await client.post("/recipes/upload", data=RECIPE, headers=auth)).json()
    run = await start(client, auth, {"recipe": recipe["id"], "inputs": [image["cid"]]})
    assert (await sse(client, run["run_id"]))[-1][1] == "run_completed"
    return dict(await (await client.get(f"/runs/{run['run_id']}/provenance")).json())


async def forged(client: Client, provenance: dict[str, Any], step: str, output: dict[str, Any]) -> str:
    """The provenance record again, signed by the same node, with ``step``'s receipt claiming
    ``output`` (bytes the step does not make); its CID."""
    node = client.app[NODE]
    record = {key: value for key, value in provenance["record"].items() if key not in ("signer", "signature")}
    receipts = []
    for receipt_cid in record["receipts"]:
        receipt = (await (await client.get(f"/provenance/{receipt_cid}")).json())["record"]
        unsigned = {key: value for key, value in receipt.items() if key not in ("signer", "signature")}
        lying = receipt["step"] == step
        receipts.append(await node.writer.put({**unsigned, "output": output}) if lying else receipt_cid)
    if step == "soft":
        record["output"] = {**output, "name": record["output"]["name"]}
    return await node.writer.put({**record, "receipts": receipts})


async def lied_about(
    client: Client, auth: dict[str, str], node_b: Client, step: str
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Render on A, forge ``step``'s receipt to claim the run's input bytes, re-execute on B: the
    genuine provenance and B's verdicts by step."""
    provenance = await rendered(client, auth)
    source = provenance["record"]["inputs"][0]
    lie = {key: source[key] for key in ("cid", "sha3_256", "size", "media_type")}
    cid = await forged(client, provenance, step, lie)
    job = await reexecuted(node_b, cid, token(node_b.app[NODE].settings))
    return provenance, {item["step"]: item for item in job["steps"]}


async def test_l2_attests_a_record_that_another_node_reproduces(
    client: Client, auth: dict[str, str], node_b: Client, settings: Settings, l2: TestL2
) -> None:
    """L2 checks node A's signature through A's /identity, then node B (its own index: no step
    results shared) re-executes every step: all reproduced, in a record signed by B."""
    provenance = await rendered(client, auth)
    settings_b = node_b.app[NODE].settings
    record = await l2.attest(client, provenance["cid"], node_b, token(settings_b))
    assert record["kind"] == "artdag/reexecution" and record["provenance"] == provenance["cid"]
    assert record["reexecuted_by"] == node_b.app[NODE].identity.node_id != record["rendered_by"]
    assert [step["step"] for step in record["steps"]] == ["dark", "warm", "soft"]
    assert {step["verdict"] for step in record["steps"]} == {"reproduced"}
    assert record["summary"] == {"reproduced": 3, "different": 0, "not reproducible here": 0}
    assert all(step["recorded"] == step["reexecuted"] for step in record["steps"])


async def test_reexecution_writes_nothing_shared_and_keeps_what_was_held(
    client: Client, auth: dict[str, str], node_b: Client, settings: Settings, redis_client: aioredis.Redis
) -> None:
    """No step entry, claim or run on the re-executing node; the originals keep their pins."""
    provenance = await rendered(client, auth)
    job = await reexecuted(node_b, provenance["cid"], token(node_b.app[NODE].settings))
    assert job["state"] == "done" and job["progress"] == {"done": 3, "total": 3}
    prefix = node_b.app[NODE].settings.redis_prefix
    written = {key.removeprefix(prefix).split(":")[0] async for key in redis_client.scan_iter(f"{prefix}*")}
    assert not written & {"step", "claim", "attempts", "run", "events", "plan"}, written
    index_b, index_a = node_b.app[NODE].store.index, client.app[NODE].store.index
    for step in job["steps"]:  # outputs held by A stay held; B indexed none of them
        assert await index_b.get(step["reexecuted"]["sha3_256"]) is None
        assert await index_a.get(step["reexecuted"]["sha3_256"]) is not None
        assert await client.app[NODE].ipfs.pin_ls(step["reexecuted"]["cid"])
    assert await node_b.app[NODE].ipfs.pin_ls(job["record_cid"])  # the record itself: pinned by B


async def test_a_receipt_claiming_other_bytes_is_different(
    client: Client, auth: dict[str, str], node_b: Client, settings: Settings
) -> None:
    """A record whose last receipt claims bytes the step does not make: that step is different
    (both CIDs given); the steps before it are reproduced."""
    provenance, verdicts = await lied_about(client, auth, node_b, "soft")
    source = provenance["record"]["inputs"][0]
    assert [verdicts[name]["verdict"] for name in ("dark", "warm")] == ["reproduced", "reproduced"]
    assert verdicts["soft"]["verdict"] == "different"
    assert verdicts["soft"]["recorded"]["cid"] == source["cid"]
    assert verdicts["soft"]["reexecuted"]["cid"] == provenance["record"]["output"]["cid"]


async def test_each_step_runs_from_its_recorded_inputs(
    client: Client, auth: dict[str, str], node_b: Client, settings: Settings
) -> None:
    """A middle receipt claiming other bytes: that step is different, and the step after it runs
    from those recorded bytes (so it is different too), making bytes no one holds: they never
    enter the IPFS repository."""
    _, verdicts = await lied_about(client, auth, node_b, "warm")
    assert [verdicts[name]["verdict"] for name in ("dark", "warm", "soft")] == [
        "reproduced",
        "different",
        "different",
    ]
    assert verdicts["soft"]["inputs"] == "recorded"
    new = verdicts["soft"]["reexecuted"]["cid"]
    assert not await node_b.app[NODE].ipfs.pin_ls(new)
    with pytest.raises(ContentNotFound):
        await node_b.app[NODE].ipfs.cat_all(new, 10**8)


async def test_reexecute_refuses_junk_before_any_work(client: Client, auth: dict[str, str]) -> None:
    """401 without a token, 400 for what is not a CID, 404 for a record this daemon lacks, 400
    for content that is not a provenance record, 404 for an unknown job."""
    image = await upload(client, auth, png_bytes(RNG.integers(0, 256, (8, 8, 3), np.uint8)))
    assert (await client.post(f"/provenance/{image['cid']}/reexecute")).status == 401
    junk = await client.post("/provenance/not-a-cid/reexecute", headers=auth)
    assert junk.status == 400 and (await junk.json())["error"]["code"] == "invalid_cid"
    unknown = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
    missing = await client.post(f"/provenance/{unknown}/reexecute", headers=auth)
    assert missing.status == 404, await missing.text()
    not_record = await client.post(f"/provenance/{image['cid']}/reexecute", headers=auth)
    assert not_record.status == 400 and (await not_record.json())["error"]["code"] == "invalid_record"
    assert (await client.get("/reexecutions/0123456789abcdef")).status == 404
    assert (await client.get("/reexecutions/nope")).status == 404


async def test_verify_reexecute_command(client: Client, auth: dict[str, str], settings: Settings) -> None:
    """`artdag-node verify --reexecute CID` asks the node on its data directory, follows the
    job and prints each step's verdict; exit 0 when all are reproduced."""
    provenance = await rendered(client, auth)
    assert client.server.port is not None
    env = {key: value for key, value in os.environ.items() if not key.startswith("ARTDAG_")}
    env.update(ARTDAG_DATA_DIR=str(settings.data_dir), ARTDAG_PORT=str(client.server.port))
    command = [sys.executable, "-m", "node", "verify", "--reexecute", provenance["cid"]]
    done = await asyncio.to_thread(
        subprocess.run, command, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"RE-EXECUTED {provenance['cid']}: 3 reproduced, 0 different")
    assert "3/3 steps" in done.stderr
    junk = [sys.executable, "-m", "node", "verify", "--reexecute", "not-a-cid"]
    refused = await asyncio.to_thread(
        subprocess.run, junk, env=env, capture_output=True, text=True, check=False
    )
    assert refused.returncode == 2 and "400" in refused.stderr


async def test_a_record_an_untrusted_node_signed_is_re_executed_only_for_the_admin(
    client: Client, auth: dict[str, str], settings: Settings, node_client: NodeClient, l2: TestL2
) -> None:
    """Its plan's step configs would run on this node's workers as written: a user who is not
    the admin gets 403 for a record signed by a node this one does not trust; the admin may."""
    provenance = await rendered(client, auth)
    node_c = await node_client(settings.replace(
        data_dir=settings.data_dir.parent / "c", redis_prefix=settings.redis_prefix + "c:",
        l2_trusted=(l2.url,), public_url=L2_PUBLIC_URL,
    ))  # fmt: skip
    alice = {"Authorization": f"Bearer {l2.issue('alice', L2_PUBLIC_URL)}"}
    refused = await node_c.post(f"/provenance/{provenance['cid']}/reexecute", headers=alice)
    assert refused.status == 403, await refused.text()
    assert "does not trust" in (await refused.json())["error"]["message"]
    job = await reexecuted(node_c, provenance["cid"], token(node_c.app[NODE].settings))
    assert job["state"] == "done" and job["summary"]["reproduced"] == 3
