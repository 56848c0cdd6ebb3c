"""The runs API as the seeds use it: POST /runs, live events, status, provenance, cancel, delete."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from PIL import Image

from node.config import Settings
from node.http.appkeys import NODE
from node.pixels.effects import EFFECTS
from node.pixels.imaging import png_bytes
from node.pixels.params import normalize_params
from tests.helpers import Client, NodeClient, sse, start, upload

RNG = np.random.default_rng(21)
PIXELS = RNG.integers(0, 256, (24, 32, 3), dtype=np.uint8)


def rendered(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.mark.parametrize("ref_kind", ["content_id", "cid", "asset"])
async def test_seeds_curl_example_renders(client: Client, auth: dict[str, str], ref_kind: str) -> None:
    """`{"recipe": "dog", "inputs": [REF], "output_name": "my-output"}` with a SHA3 hex, a CID or
    an asset name: 202, events to run_completed, output equal to dog applied directly."""
    image = await upload(client, auth, png_bytes(PIXELS), name="cat")
    ref = {"content_id": image["content_id"], "cid": image["cid"], "asset": "cat"}[ref_kind]
    run = await start(client, auth, {"recipe": "dog", "inputs": [ref], "output_name": "my-output"})
    assert run["status"] == "queued" and run["url"] == f"/runs/{run['run_id']}"
    events = await sse(client, run["run_id"])
    kinds = [kind for _, kind, _ in events if kind != "progress"]
    assert kinds in (["run_queued", "step_started", "step_finished", "run_completed"],
                     ["run_queued", "step_cached", "run_completed"])  # fmt: skip
    status = await (await client.get(f"/runs/{run['run_id']}")).json()
    assert status["status"] == "completed" and status["progress"] == 100
    assert status["steps"]["dog"]["state"] in ("done", "cached")
    assert status["steps"]["dog"]["node"] == client.app[NODE].identity.node_id
    output = await (await client.get(f"/cache/{status['output']['cid']}")).read()
    params, _ = normalize_params(EFFECTS["dog"].params, {})
    assert EFFECTS["dog"].apply is not None
    np.testing.assert_array_equal(rendered(output), EFFECTS["dog"].apply(PIXELS, params))


async def test_late_client_catches_up_from_last_event_id(client: Client, auth: dict[str, str]) -> None:
    """A client reconnecting with Last-Event-ID gets exactly the events after it, to the end."""
    image = await upload(client, auth, png_bytes(PIXELS))
    run = await start(client, auth, {"recipe": "invert", "inputs": [image["cid"]]})
    everything = await sse(client, run["run_id"])
    rest = await sse(client, run["run_id"], last_event_id=everything[0][0])
    assert rest == everything[1:]
    assert rest[-1][1] == "run_completed"


RECIPE = """
name: two-in
dag:
  nodes:
    - {id: base, type: SOURCE, config: {input: true, name: base}}
    - {id: top, type: SOURCE, config: {input: true, name: top}}
    - {id: out, type: BLEND, config: {mode: multiply}, inputs: [base, top]}
  output: out
"""


async def test_uploaded_recipe_with_named_inputs(client: Client, auth: dict[str, str]) -> None:
    """A YAML recipe uploaded as content runs by its CID with {name: ref} inputs."""
    recipe = await upload(client, auth, RECIPE.encode())
    base = await upload(client, auth, png_bytes(PIXELS))
    top = await upload(client, auth, png_bytes(255 - PIXELS))
    run = await start(
        client, auth, {"recipe": recipe["cid"], "inputs": {"top": top["cid"], "base": base["cid"]}}
    )
    assert (await sse(client, run["run_id"]))[-1][1] == "run_completed"
    record = await (await client.get(f"/runs/{run['run_id']}")).json()
    assert record["recipe"] == {"name": "two-in", "cid": recipe["cid"]}
    assert {item["name"] for item in record["inputs"]} == {"base", "top"}


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ("not json", 400, "body"),
        ([1, 2], 400, "body"),
        ({"inputs": []}, 400, "recipe"),
        ({"recipe": "dog", "inputs": [], "colour": "red"}, 400, "colour"),
        ({"recipe": "dog", "inputs": ["a"], "output_name": "../x"}, 400, "output_name"),
        ({"recipe": "dog", "inputs": []}, 400, "inputs"),
        ({"recipe": "dog", "inputs": "cat"}, 400, "inputs"),
        ({"recipe": "dog", "inputs": {"other": "x"}}, 400, "inputs"),
        ({"recipe": "dog", "inputs": [5]}, 400, "inputs[0]"),
        ({"recipe": "dog", "inputs": ["nosuch"]}, 404, "inputs[0]"),
        ({"recipe": "melt", "inputs": []}, 404, "recipe"),
    ],
)
async def test_bad_run_requests_name_the_field(
    client: Client, auth: dict[str, str], body: Any, status: int, field: str
) -> None:
    """Every bad body is a 4xx in the error shape naming the field; no run is created."""
    kwargs = {"data": body} if isinstance(body, str) else {"json": body}
    response = await client.post("/runs", headers=auth, **kwargs)
    assert response.status == status
    assert (await response.json())["error"]["details"]["field"] == field
    assert (await (await client.get("/runs")).json())["items"] == []


async def test_anonymous_run_is_401(client: Client) -> None:
    response = await client.post("/runs", json={"recipe": "dog", "inputs": []})
    assert response.status == 401


WAIT_TEN_SECONDS = (
    "name: waits\ndag:\n  nodes:\n    - {id: src, type: SOURCE, config: {input: true}}\n"
    "    - {id: out, type: EFFECT, config: {effect: wait, seconds: 10}, inputs: [src]}\n  output: out\n"
)


async def test_cancel_and_delete(client: Client, auth: dict[str, str]) -> None:
    """A running run cannot be deleted (409); cancelled, it can; unknown runs are 404."""
    image = await upload(client, auth, png_bytes(PIXELS))
    recipe = await upload(client, auth, WAIT_TEN_SECONDS.encode())  # still going when cancelled
    run = await start(client, auth, {"recipe": recipe["cid"], "inputs": [image["cid"]]})
    run_id = run["run_id"]
    assert (await client.delete(f"/runs/{run_id}", headers=auth)).status == 409
    assert (await client.post(f"/runs/{run_id}/cancel")).status == 401
    cancelled = await client.post(f"/runs/{run_id}/cancel", headers=auth)
    assert (await cancelled.json())["status"] == "cancelled"
    assert (await client.delete(f"/runs/{run_id}", headers=auth)).status == 200
    assert (await client.get(f"/runs/{run_id}")).status == 404
    assert (await client.post("/runs/run-nosuch/cancel", headers=auth)).status == 404


async def test_listing_filters(client: Client, auth: dict[str, str]) -> None:
    image = await upload(client, auth, png_bytes(PIXELS))
    first = await start(client, auth, {"recipe": "invert", "inputs": [image["cid"]]})
    second = await start(client, auth, {"recipe": "sepia", "inputs": [image["cid"]]})
    for run in (first, second):
        await sse(client, run["run_id"])
    listed = await (await client.get("/runs?status=completed&owner=admin")).json()
    assert [item["run_id"] for item in listed["items"]] == [second["run_id"], first["run_id"]]
    assert (await (await client.get("/runs?owner=someone-else")).json())["items"] == []
    assert (await (await client.get("/runs?limit=1&offset=1")).json())["items"][0]["run_id"] == first[
        "run_id"
    ]
    assert (await client.get("/runs?status=lost")).status == 400


async def test_provenance_endpoints(client: Client, auth: dict[str, str]) -> None:
    """A completed run's provenance is served and verifies; a queued one says it has none yet."""
    image = await upload(client, auth, png_bytes(PIXELS))
    run = await start(client, auth, {"recipe": "grayscale", "inputs": [image["cid"]]})
    await sse(client, run["run_id"])
    served = await (await client.get(f"/runs/{run['run_id']}/provenance")).json()
    assert served["record"]["run_id"] == run["run_id"]
    by_cid = await (await client.get(f"/provenance/{served['cid']}")).json()
    assert by_cid == served
    verdict = await (await client.get(f"/provenance/{served['cid']}/verify")).json()
    assert verdict["ok"] is True and verdict["problems"] == []
    stranger = await (await client.get(f"/provenance/{served['cid']}/verify?trust=z6MkNobody")).json()
    assert stranger["ok"] is False
    not_record = await client.get(f"/provenance/{image['cid']}")
    assert not_record.status == 400


async def test_effects_and_assets(client: Client, auth: dict[str, str]) -> None:
    effects = (await (await client.get("/effects")).json())["items"]
    assert {effect["name"] for effect in effects} == set(EFFECTS)
    assert all("properties" in effect["params"] for effect in effects)
    image = await upload(client, auth, png_bytes(PIXELS), name="cat")
    assets = (await (await client.get("/assets")).json())["items"]
    assert assets == [{"name": "cat", **{key: image[key] for key in image if key != "name"}}]


async def test_chunked_body_is_read_whole(client: Client, auth: dict[str, str]) -> None:
    """A JSON body sent in chunks (no Content-Length) is read to its end, not cut short."""
    image = await upload(client, auth, png_bytes(PIXELS))
    text = json.dumps({"recipe": "invert", "inputs": [image["cid"]], "output_name": "x" * 100}).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for offset in range(0, len(text), 7):
            yield text[offset : offset + 7]

    response = await client.post("/runs", data=chunks(), headers={**auth, "Content-Type": "application/json"})
    assert response.status == 202, await response.text()


async def test_recipe_bytes_are_held_by_their_runs(client: Client, auth: dict[str, str]) -> None:
    """The YAML a run was made from cannot be deleted while the run exists (its provenance names it)."""
    recipe = await (await client.post("/recipes/upload", data=RECIPE, headers=auth)).json()
    base = await upload(client, auth, png_bytes(PIXELS))
    run = await start(client, auth, {"recipe": recipe["cid"], "inputs": [base["cid"], base["cid"]]})
    await sse(client, run["run_id"])
    assert (await client.delete(f"/cache/{recipe['cid']}", headers=auth)).status == 409


@pytest.mark.parametrize("value", ["99999999999999999999-0", "abc", "1-2-3"])
async def test_bad_last_event_id_is_400(client: Client, auth: dict[str, str], value: str) -> None:
    image = await upload(client, auth, png_bytes(PIXELS))
    run = await start(client, auth, {"recipe": "invert", "inputs": [image["cid"]]})
    response = await client.get(f"/runs/{run['run_id']}/events", headers={"Last-Event-ID": value})
    assert response.status == 400
    assert (await response.json())["error"]["details"]["field"] == "Last-Event-ID"


async def test_a_run_shows_what_each_step_did(client: Client, auth: dict[str, str]) -> None:
    """GET /runs/{id} lists every work step from the start: its type, its normalized config
    (the parameters it ran with), the steps it read, the node, when it started and ended, how
    long it waited and ran; the run has its times; /runs shows progress and duration."""
    recipe = await client.post("/recipes/upload", data=TIMED_RECIPE, headers=auth)
    assert recipe.status == 201, await recipe.text()
    image = await upload(client, auth, png_bytes(PIXELS))
    run = await start(client, auth, {"recipe": (await recipe.json())["id"], "inputs": [image["cid"]]})
    pending = await (await client.get(f"/runs/{run['run_id']}")).json()
    assert set(pending["steps"]) == {"soft", "edges"}  # both listed before any ran
    assert (await sse(client, run["run_id"]))[-1][1] == "run_completed"
    shown = await (await client.get(f"/runs/{run['run_id']}")).json()
    soft, edges = shown["steps"]["soft"], shown["steps"]["edges"]
    assert soft["type"] == "EFFECT" and soft["config"]["params"] == {"sigma": 8.0}
    assert edges["config"]["params"] == {"sigma": 1.0, "k": 1.6, "gain": 10.0}  # defaults filled in
    assert edges["inputs"] == ["soft"] and soft["inputs"] == ["photo"]
    node_id = client.app[NODE].identity.node_id
    for step in (soft, edges):
        assert step["state"] == "done" and step["node"] == node_id
        assert step["started"] <= step["finished"] and step["running_s"] >= 0 and step["queued_s"] >= 0
    assert edges["started"] >= soft["finished"]  # it waited for its input, not counted as queue
    assert shown["started"] <= shown["finished"] and shown["progress"] == 100
    assert shown["duration_s"] >= shown["running_s"] >= max(soft["running_s"], edges["running_s"])
    listed = (await (await client.get("/runs")).json())["items"]
    mine = next(item for item in listed if item["run_id"] == run["run_id"])
    assert mine["progress"] == 100 and mine["duration_s"] == shown["duration_s"]


TIMED_RECIPE = """
name: soft-edges
dag:
  nodes:
    - {id: photo, type: SOURCE, config: {input: true, name: photo}}
    - {id: soft, type: EFFECT, config: {effect: blur, params: {sigma: 8}}, inputs: [photo]}
    - {id: edges, type: EFFECT, config: {effect: dog}, inputs: [soft]}
  output: edges
"""


async def test_intermediates_stay_out_of_the_library(client: Client, auth: dict[str, str]) -> None:
    """After a two-step run, the media listing (and the pickers and /media) show the upload and
    the run's output, not the first step's intermediate; intermediates=true shows it too."""
    recipe = await client.post("/recipes/upload", data=TIMED_RECIPE, headers=auth)
    image = await upload(client, auth, png_bytes(255 - PIXELS))
    run = await start(client, auth, {"recipe": (await recipe.json())["id"], "inputs": [image["cid"]]})
    assert (await sse(client, run["run_id"]))[-1][1] == "run_completed"
    shown = await (await client.get(f"/runs/{run['run_id']}")).json()
    intermediate, output = shown["steps"]["soft"]["cid"], shown["output"]["cid"]

    async def listed(query: str) -> set[str]:
        return {item["cid"] for item in (await (await client.get(f"/cache?{query}")).json())["items"]}

    library = await listed("kind=media")
    assert {image["cid"], output} <= library and intermediate not in library
    assert intermediate in await listed("kind=image&intermediates=true")
    assert intermediate in await listed("")  # the store's own listing holds everything
    page = await (await client.get("/media")).text()
    assert output in page and intermediate not in page
    assert intermediate in await (await client.get("/media?intermediates=true")).text()


@pytest.mark.parametrize(
    ("request_line", "body", "said"),
    [
        ("GET /cache/bafkreicat", None, "a CID"),
        ("GET /cache/QmNotBase58IlO0", None, "a CID"),
        ("POST /runs", {"recipe": "dog", "inputs": ["bafyreicat"]}, "no content or asset"),
        ("POST /recipes/upload", "dag: {nodes: [], output: x}", "name: is missing"),
        ("POST /recipes/upload", "name: 'a b'\ndag: {nodes: [], output: x}", "1-64 letters, digits"),
    ],
)
async def test_errors_say_what_to_do_without_library_internals(
    client: Client, auth: dict[str, str], request_line: str, body: Any, said: str
) -> None:
    """Parser internals never reach users: no 'Pad bits must be zero', StringAlphabet(...),
    'got None' or an exception's class name; the message says what a valid value looks like."""
    method, path = request_line.split()
    options: dict[str, Any] = {"json": body} if isinstance(body, dict) else {"data": body}
    response = await client.request(method, path, headers=auth, **({} if body is None else options))
    assert 400 <= response.status < 500
    message = (await response.json())["error"]["message"]
    assert said in message, message
    for internal in ("Pad bits", "StringAlphabet", "got None", "Error:", "[A-Za-z"):
        assert internal not in message, message


async def test_a_run_s_output_name_names_its_output(client: Client, auth: dict[str, str]) -> None:
    """output_name labels the output (on /media) and is an input name: the newest run of that
    name's output; an asset of the same name, uploaded, wins."""
    image = await upload(client, auth, png_bytes(PIXELS))
    outputs = []
    for effect in ("invert", "sepia"):
        run = await start(client, auth, {"recipe": effect, "inputs": [image["cid"]], "output_name": "poster"})
        assert (await sse(client, run["run_id"]))[-1][1] == "run_completed"
        outputs.append((await (await client.get(f"/runs/{run['run_id']}")).json())["output"])
    again = await start(client, auth, {"recipe": "identity", "inputs": ["poster"]})
    assert again["inputs"][0]["content_id"] == outputs[-1]["content_id"]  # the newest of that name
    assert "poster" in await (await client.get("/media")).text()
    named = await upload(client, auth, png_bytes(255 - PIXELS), name="poster")
    chosen = await start(client, auth, {"recipe": "identity", "inputs": ["poster"]})
    assert chosen["inputs"][0]["content_id"] == named["content_id"]


FAILS_SECOND = """
name: grows
dag:
  nodes:
    - {id: photo, type: SOURCE, config: {input: true, name: photo}}
    - {id: flip, type: EFFECT, config: {effect: invert}, inputs: [photo]}
    - {id: huge, type: RESIZE, config: {width: 6000, height: 6000, fit: stretch}, inputs: [flip]}
  output: huge
"""


async def test_a_failed_run_is_retried_as_a_new_run(settings: Settings, node_client: NodeClient) -> None:
    """A run whose second step cannot fit the workers' memory fails; its retry is a new run
    (retry_of it) that reuses the first step and tries the second afresh (its own attempts),
    not failed at once on the old run's counters. A completed run is 409."""
    client = await node_client(settings.replace(worker_memory=512 * 1024**2))  # alone on its prefix
    auth = {"Authorization": f"Bearer {(settings.data_dir / 'admin_token').read_text().strip()}"}
    recipe = await client.post("/recipes/upload", data=FAILS_SECOND, headers=auth)
    image = await upload(client, auth, png_bytes(PIXELS))
    failed = await start(client, auth, {"recipe": (await recipe.json())["id"], "inputs": [image["cid"]]})
    assert (await sse(client, failed["run_id"]))[-1][1] == "run_failed"
    answer = await client.post(f"/runs/{failed['run_id']}/retry", headers=auth)
    assert answer.status == 202, await answer.text()
    retried = await answer.json()
    assert retried["retry_of"] == failed["run_id"] and retried["run_id"] != failed["run_id"]
    assert retried["inputs"] == failed["inputs"] and retried["plan_id"] == failed["plan_id"]
    events = await sse(client, retried["run_id"])
    kinds = [(data.get("step"), kind) for _, kind, data in events]
    assert ("flip", "step_cached") in kinds and ("huge", "step_started") in kinds  # tried again
    assert events[-1][1] == "run_failed" and "out_of_memory" in events[-1][2]["error"]
    assert "Retry of" in await (await client.get(f"/run/{retried['run_id']}")).text()
    done = await start(client, auth, {"recipe": "invert", "inputs": [image["cid"]]})
    assert (await sse(client, done["run_id"]))[-1][1] == "run_completed"
    refused = await client.post(f"/runs/{done['run_id']}/retry", headers=auth)
    assert (
        refused.status == 409
        and "only a failed or cancelled run" in (await refused.json())["error"]["message"]
    )
    assert (await client.post(f"/runs/{failed['run_id']}/retry")).status == 401


async def test_a_batch_runs_one_recipe_over_many_inputs(client: Client, auth: dict[str, str]) -> None:
    """POST /runs/batch: a run per item, answered together, each output named name-1, name-2."""
    images = [
        await upload(client, auth, png_bytes(RNG.integers(0, 256, (8, 8, 3), np.uint8))) for _ in range(3)
    ]
    body = {
        "recipe": "blur",
        "params": {"sigma": 3},
        "items": [[image["cid"]] for image in images],
        "output_name": "soft",
    }
    answer = await client.post("/runs/batch", json=body, headers=auth)
    assert answer.status == 202, await answer.text()
    runs = (await answer.json())["runs"]
    assert [run["output_name"] for run in runs] == ["soft-1", "soft-2", "soft-3"]
    assert [run["inputs"][0]["content_id"] for run in runs] == [image["content_id"] for image in images]
    for run in runs:
        assert run["url"] == f"/runs/{run['run_id']}"
        assert (await sse(client, run["run_id"]))[-1][1] == "run_completed"


async def test_a_batch_with_a_bad_item_submits_nothing(
    client: Client, auth: dict[str, str], settings: Settings
) -> None:
    """Any bad item is a 400 listing each bad one by index; no run is submitted. Beyond
    ARTDAG_MAX_BATCH items is a 400 naming the setting."""
    image = await upload(client, auth, png_bytes(PIXELS))
    items = [[image["cid"]], ["no-such-asset"], [image["cid"], image["cid"]], [image["cid"]]]
    answer = await client.post("/runs/batch", json={"recipe": "invert", "items": items}, headers=auth)
    assert answer.status == 400
    error = (await answer.json())["error"]
    assert [problem["item"] for problem in error["details"]["problems"]] == [1, 2]
    assert "2 of 4 items are not valid, so no run was submitted" in error["message"]
    assert (await (await client.get("/runs")).json())["items"] == []
    too_many = [[image["cid"]]] * (settings.max_batch + 1)
    refused = await client.post("/runs/batch", json={"recipe": "invert", "items": too_many}, headers=auth)
    assert refused.status == 400 and "ARTDAG_MAX_BATCH" in (await refused.json())["error"]["message"]
    assert (
        await client.post("/runs/batch", json={"recipe": "invert", "items": [[image["cid"]]]})
    ).status == 401
