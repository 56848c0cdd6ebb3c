"""A completed run's in-toto/SLSA attestation, checked with third-party libraries only:
securesystemslib (DSSE, Ed25519) and in-toto-attestation (Statement and Provenance protobufs)."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from typing import Any

import numpy as np
import pytest
from google.protobuf import json_format
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import SSlibKey

from node.http.appkeys import NODE
from node.pixels.imaging import png_bytes
from node.sync.run_status import REQUIRED_FIELDS
from tests.helpers import Client, poll_async, sse, start, upload

RNG = np.random.default_rng(27)
RECIPE = """
name: attested
dag:
  nodes:
    - {id: base, type: SOURCE, config: {input: true, name: base}}
    - {id: top, type: SOURCE, config: {input: true, name: top}}
    - {id: inverted, type: EFFECT, config: {effect: invert}, inputs: [base]}
    - {id: out, type: BLEND, config: {mode: multiply}, inputs: [inverted, top]}
  output: out
"""
WAIT_TEN_SECONDS = (
    "name: waits\ndag:\n  nodes:\n    - {id: src, type: SOURCE, config: {input: true}}\n"
    "    - {id: out, type: EFFECT, config: {effect: wait, seconds: 10}, inputs: [src]}\n  output: out\n"
)


def digests(data: bytes) -> dict[str, str]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "sha3_256": hashlib.sha3_256(data).hexdigest()}


async def served(client: Client, cid: str) -> bytes:
    response = await client.get(f"/cache/{cid}")
    assert response.status == 200
    return await response.read()


async def node_key(client: Client) -> SSlibKey:
    """The node's public key as GET /identity gives it, as securesystemslib takes it."""
    identity = await (await client.get("/identity")).json()
    public = base64.b64decode(identity["public_key"]).hex()
    return SSlibKey(f"did:key:{identity['node_id']}", "ed25519", "ed25519", {"public": public})


async def completed_run(client: Client, auth: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A completed two-input run (one input several IPFS blocks long) and its uploads by name."""
    uploads = {
        "recipe": await upload(client, auth, RECIPE.encode()),
        "base": await upload(client, auth, png_bytes(RNG.integers(0, 256, (320, 320, 3), np.uint8))),
        "top": await upload(client, auth, png_bytes(RNG.integers(0, 256, (320, 320, 3), np.uint8))),
    }
    inputs = {"base": uploads["base"]["cid"], "top": uploads["top"]["cid"]}
    run = await start(
        client, auth, {"recipe": uploads["recipe"]["cid"], "inputs": inputs, "output_name": "art"}
    )
    assert (await sse(client, run["run_id"]))[-1][1] == "run_completed"
    return await (await client.get(f"/runs/{run['run_id']}")).json(), uploads


async def test_attestation_verifies_with_standard_tools(client: Client, auth: dict[str, str]) -> None:
    """The envelope verifies with the key from GET /identity; the statement and its SLSA
    predicate parse as in-toto's protobufs; every digest is that of the bytes GET /cache serves."""
    run, uploads = await completed_run(client, auth)
    response = await client.get(f"/runs/{run['run_id']}/attestation")
    assert response.status == 200 and response.content_type == "application/json"
    envelope = Envelope.from_dict(await response.json())
    key = await node_key(client)
    assert set(envelope.verify([key], 1)) == {key.keyid}
    assert envelope.payload_type == "application/vnd.in-toto+json"

    statement = json.loads(envelope.payload)
    Statement.copy_from_pb(json_format.ParseDict(statement, statement_pb2.Statement())).validate()
    predicate = statement["predicate"]
    json_format.ParseDict(predicate, provenance_pb2.Provenance())  # unknown fields are refused
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"

    (subject,) = statement["subject"]
    assert subject["name"] == "art"
    assert subject["digest"] == digests(await served(client, run["output"]["cid"]))

    build = predicate["buildDefinition"]
    assert build["buildType"] == "https://artdag.dev/l1-render/v1"
    assert build["externalParameters"]["recipe"]["cid"] == uploads["recipe"]["cid"]
    assert {item["name"] for item in build["externalParameters"]["inputs"]} == {"base", "top"}
    assert build["internalParameters"]["planId"] == run["plan_id"]
    assert [effect["name"] for effect in build["internalParameters"]["effects"]] == ["invert"]
    dependencies = {item["name"]: item for item in build["resolvedDependencies"]}
    assert set(dependencies) == {"recipe:attested", "plan", "input:base", "input:top"}
    for name, uploaded in (("recipe:attested", "recipe"), ("input:base", "base"), ("input:top", "top")):
        assert dependencies[name]["uri"] == f"ipfs://{uploads[uploaded]['cid']}"
        assert dependencies[name]["digest"] == digests(await served(client, uploads[uploaded]["cid"]))
    assert dependencies["plan"]["uri"] == f"ipfs://{run['plan_cid']}"
    assert dependencies["plan"]["digest"] == digests(await served(client, run["plan_cid"]))

    details = predicate["runDetails"]
    assert details["builder"]["id"] == key.keyid == envelope.signatures[key.keyid].keyid
    assert details["metadata"] == {
        "invocationId": run["run_id"],
        "startedOn": run["started"],
        "finishedOn": run["finished"],
    }
    byproducts = details["byproducts"]
    assert byproducts[0]["uri"] == f"ipfs://{run['provenance_cid']}"
    assert [item["name"] for item in byproducts[1:]] == ["receipt", "receipt"]


@pytest.mark.parametrize(
    "change",
    [
        lambda statement: statement["subject"][0]["digest"].update(sha256="0" * 64),
        lambda statement: statement["predicate"]["runDetails"]["builder"].update(id="did:key:z6MkNobody"),
    ],
)
async def test_a_tampered_attestation_fails(client: Client, auth: dict[str, str], change: Any) -> None:
    """A payload altered after signing, or a signature from another payload, fails to verify."""
    run, _ = await completed_run(client, auth)
    signed = await (await client.get(f"/runs/{run['run_id']}/attestation")).json()
    key = await node_key(client)
    statement = json.loads(base64.b64decode(signed["payload"]))
    change(statement)
    tampered = copy.deepcopy(signed)
    tampered["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    with pytest.raises(VerificationError):
        Envelope.from_dict(tampered).verify([key], 1)
    Envelope.from_dict(copy.deepcopy(signed)).verify([key], 1)  # the original still does


async def test_the_same_envelope_every_time(client: Client, auth: dict[str, str]) -> None:
    """The envelope is written once and kept: the same bytes, and the ETag its CID in the run
    record; it is served as the DSSE media type on request."""
    run, _ = await completed_run(client, auth)
    first = await client.get(f"/runs/{run['run_id']}/attestation")
    again = await client.get(
        f"/runs/{run['run_id']}/attestation", headers={"Accept": "application/vnd.dsse.envelope.v1+json"}
    )
    assert await first.read() == await again.read()
    assert again.content_type == "application/vnd.dsse.envelope.v1+json"
    assert first.headers["ETag"] == f'"{run["attestation_cid"]}"'
    assert await served(client, run["attestation_cid"]) == await first.read()


async def test_no_attestation_before_completion(client: Client, auth: dict[str, str]) -> None:
    """A running run answers 409 saying when to ask again; an unknown run 404."""
    image = await upload(client, auth, png_bytes(RNG.integers(0, 256, (8, 8, 3), np.uint8)))
    recipe = await upload(client, auth, WAIT_TEN_SECONDS.encode())
    run = await start(client, auth, {"recipe": recipe["cid"], "inputs": [image["cid"]]})

    async def running() -> bool:
        return bool((await (await client.get(f"/runs/{run['run_id']}")).json())["status"] == "running")

    await poll_async(running)
    early = await client.get(f"/runs/{run['run_id']}/attestation")
    assert early.status == 409
    error = (await early.json())["error"]
    assert error["code"] == "conflict" and "ask again after run_completed" in error["message"]
    cancelled = await client.post(f"/runs/{run['run_id']}/cancel", headers=auth)
    assert (await cancelled.json())["status"] == "cancelled"
    late = await (await client.get(f"/runs/{run['run_id']}/attestation")).json()
    assert late["error"]["message"] == "run is cancelled: only a completed run has an attestation"
    unknown = await client.get("/runs/run-0000000000000000/attestation")
    assert unknown.status == 404 and (await unknown.json())["error"]["code"] == "run_not_found"


async def test_a_run_completed_before_attestations_says_where_its_provenance_is(
    client: Client, auth: dict[str, str]
) -> None:
    """A completed run whose record names no attestation (written by an older node) is 404,
    pointing at its provenance."""
    run, _ = await completed_run(client, auth)
    node = client.app[NODE]
    older = {key: value for key, value in run.items() if key in REQUIRED_FIELDS}
    await node.redis.set(node.keys.run(run["run_id"]), json.dumps(older))
    response = await client.get(f"/runs/{run['run_id']}/attestation")
    assert response.status == 404
    assert f"/runs/{run['run_id']}/provenance" in (await response.json())["error"]["message"]
