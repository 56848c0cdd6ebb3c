"""The API describes itself: every route in /openapi.json, a valid document, and /docs served
by the node alone."""

from __future__ import annotations

import json
import re
from typing import Any

import aiohttp
import numpy as np
import pytest
from jsonschema import Draft202012Validator
from multiformats import CID
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from node.http.openapi import HEAD_DOCUMENTED, described, is_api_route
from node.pixels.imaging import png_bytes
from tests.helpers import Client, sse

UI_ASSETS = re.compile(r'(?:src|href)="([^"]+)"')


async def test_every_route_is_in_the_document(client: Client) -> None:
    """The router's routes and the document's operations are the same set."""
    routes = {
        (route.method.lower(), route.resource.canonical)
        for route in client.app.router.routes()
        if (route.method != "HEAD" or route.name in HEAD_DOCUMENTED)
        and route.resource is not None
        and is_api_route(route)
    }
    document = await (await client.get("/openapi.json")).json()
    operations = {(method, path) for path, item in document["paths"].items() for method in item}
    assert operations == routes
    assert len(routes) >= 30


async def test_the_document_is_valid_openapi(client: Client) -> None:
    document = await (await client.get("/openapi.json")).json()
    validate(document)  # raises on any problem
    assert document["openapi"].startswith("3.1")


TOKEN_IN_BODY = {"/auth/revoke", "/auth/revoke-user"}  # holding the token is the proof


async def test_every_operation_says_what_it_answers(client: Client) -> None:
    """A summary, at least one success (a redirect for the login pages), the error shape for
    its errors, auth where it writes (except revocations, which carry their token)."""
    document = await (await client.get("/openapi.json")).json()
    for path, item in document["paths"].items():
        for method, spec in item.items():
            assert spec["summary"], (method, path)
            successes = [status for status in spec["responses"] if status.startswith(("2", "3"))]
            assert successes, (method, path)
            for status, answer in spec["responses"].items():
                if status.startswith(("4", "5")) and method != "head":  # HEAD answers have no body
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, status)
            if method in ("post", "delete") and path not in TOKEN_IN_BODY:
                assert spec.get("security") == [{"bearer": []}], (method, path)


async def test_links_name_operations_and_parameters_that_exist(client: Client) -> None:
    """Each OpenAPI link (what to call next with an answer) targets an operation of the document
    by its id, with parameters that operation has; the stateful fuzzer follows them."""
    document = await (await client.get("/openapi.json")).json()
    operations = {spec["operationId"]: spec for item in document["paths"].values() for spec in item.values()}
    links = [
        found
        for item in document["paths"].values()
        for spec in item.values()
        for answer in spec["responses"].values()
        for found in answer.get("links", {}).values()
    ]
    assert len(links) >= 10
    for found in links:
        target = operations[found["operationId"]]
        names = {parameter["name"] for parameter in target["parameters"]}
        assert set(found.get("parameters", {})) <= names, found
        assert "parameters" in found or "requestBody" in target, found


async def test_no_parameter_is_a_bare_string_and_no_default_answer(client: Client) -> None:
    """Every path parameter has the pattern its handler accepts, and no operation answers a
    catch-all `default`: each status it can give is listed."""
    document = await (await client.get("/openapi.json")).json()
    for path, item in document["paths"].items():
        for method, spec in item.items():
            assert "default" not in spec["responses"], (method, path)
            for parameter in spec["parameters"]:
                if parameter["in"] == "path":
                    assert "pattern" in parameter["schema"], (method, path, parameter["name"])


async def test_only_the_web_ui_is_left_out(client: Client) -> None:
    """The routes the document leaves out are exactly the web UI's pages and assets (and the
    docs' files: its script and assets): an API route cannot slip out by being taken for a page."""
    left_out = {
        route.resource.canonical
        for route in client.app.router.routes()
        if route.resource is not None and route.method != "HEAD" and not is_api_route(route)
    }
    pages = {"/run/{run_id}", "/recipe/{id}", "/media", "/download/client", "/download/artdag.pyz"}
    assert {path for path in left_out if not path.startswith(("/static", "/docs/"))} == pages


async def test_handlers_carry_their_own_description(client: Client) -> None:
    for route in client.app.router.routes():
        if route.method != "HEAD" and is_api_route(route):
            assert described(route.handler) is not None, route


async def test_docs_load_with_nothing_from_outside(client: Client) -> None:
    """/docs and every asset it names come from this node, and its policy forbids any other
    origin."""
    response = await client.get("/docs")
    assert response.status == 200 and response.content_type == "text/html"
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "connect-src 'self'" in policy
    assets = UI_ASSETS.findall(await response.text())
    assert len(assets) >= 3
    for asset in assets:
        assert asset.startswith("/") and not asset.startswith("//"), asset
        loaded = await client.get(asset)
        assert loaded.status == 200, asset
        assert len(await loaded.read()) > 0
    script = await (await client.get("/docs/init.js")).text()
    assert 'url: "/openapi.json"' in script and "validatorUrl: null" in script
    paths = (await (await client.get("/openapi.json")).json())["paths"]
    assert "/docs" in paths and not [path for path in paths if path.startswith("/docs/")]  # files, not API


class Conformance:
    """Checks real answers against the document: status documented, JSON body valid."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.registry: Registry[Any] = Registry().with_resource(
            "urn:api", Resource.from_contents(document, default_specification=DRAFT202012)
        )

    async def check(self, response: aiohttp.ClientResponse, method: str, path: str) -> Any:
        answers = self.document["paths"][path][method]["responses"]
        assert str(response.status) in answers, (method, path, response.status, await response.text())
        schema = answers[str(response.status)]["content"]["application/json"]["schema"]
        body = await response.json()
        if "$ref" in schema:
            schema = {"$ref": "urn:api" + schema["$ref"]}
        errors = list(Draft202012Validator(schema, registry=self.registry).iter_errors(body))
        assert not errors, (method, path, [error.message for error in errors])
        return body


async def test_real_answers_of_a_whole_run_match_the_document(client: Client, auth: dict[str, str]) -> None:
    """A run from upload to deletion: every answer's status is documented and its body valid
    (the fuzzer only meets a node with nothing in it)."""
    conforms = Conformance(await (await client.get("/openapi.json")).json())
    form = aiohttp.FormData()
    form.add_field("file", png_bytes(np.full((8, 8, 3), 90, np.uint8)), filename="f")
    image = await conforms.check(
        await client.post("/cache/upload", data=form, headers=auth), "post", "/cache/upload"
    )
    started = await conforms.check(
        await client.post("/runs", json={"recipe": "invert", "inputs": [image["cid"]]}, headers=auth),
        "post",
        "/runs",
    )
    run = f"/runs/{started['run_id']}"
    assert (await sse(client, started["run_id"]))[-1][1] == "run_completed"
    record = await conforms.check(await client.get(run), "get", "/runs/{run_id}")
    assert record["output"] is not None
    await conforms.check(await client.get("/runs"), "get", "/runs")
    await conforms.check(await client.post(f"{run}/cancel", headers=auth), "post", "/runs/{run_id}/cancel")
    await conforms.check(await client.get(f"{run}/provenance"), "get", "/runs/{run_id}/provenance")
    verify = f"/provenance/{record['provenance_cid']}/verify"
    assert (await conforms.check(await client.get(verify), "get", "/provenance/{cid}/verify"))["ok"]
    await conforms.check(
        await client.get(f"/cache/{record['output']['cid']}/probe"), "get", "/cache/{ref}/probe"
    )
    for path in ("/cache", "/effects", "/assets", "/recipes", "/", "/health"):
        await conforms.check(await client.get(path), "get", path)
    await conforms.check(await client.delete(run, headers=auth), "delete", "/runs/{run_id}")
    gone = await client.get(run)  # its finished view was held in memory: forgotten with it
    assert gone.status == 404
    await conforms.check(gone, "get", "/runs/{run_id}")


# The document's limits are the handlers': what it calls invalid, the node refuses (400 naming
# the field), and what the node answers, it documents. Each case was a disagreement found by
# schemathesis (tests/test_api_fuzz.py finds such things; these keep each one fixed).

UNKNOWN_CID = "bafkreihkusuu5iya4djmo5mwrs7ef4fvwuoov7plople5hx535wu5caimu"


async def test_a_ref_outside_the_documented_spellings_is_400(client: Client, auth: dict[str, str]) -> None:
    """`DELETE /cache/0` was valid by the document (a bare string) and answered 400; now the
    ref's pattern is the handlers' own: outside it 400 invalid_cid, inside it 404 when unknown.
    A multibase spelling the docs do not name (hex `f...`) is outside both."""
    document = await (await client.get("/openapi.json")).json()
    pattern = re.compile(document["paths"]["/cache/{ref}"]["delete"]["parameters"][0]["schema"]["pattern"])
    cid = CID.decode(UNKNOWN_CID)
    outside = ["0", "garbage", "Qm123", str(cid.encode("base16")), "ab" * 31]
    inside = [UNKNOWN_CID, str(cid.encode("base58btc")), "cd" * 32, "CD" * 32]
    for ref in outside:
        assert not pattern.search(ref), ref
        for answer in (
            await client.delete(f"/cache/{ref}", headers=auth),
            await client.get(f"/recipes/{ref}"),
        ):
            assert answer.status == 400, (ref, await answer.text())
            assert (await answer.json())["error"]["code"] == "invalid_cid"
    for ref in inside:
        assert pattern.search(ref), ref
        assert (await client.delete(f"/cache/{ref}", headers=auth)).status == 404, ref
    provenance = await client.get(f"/provenance/{'cd' * 32}")  # a record is named by its CID only
    assert provenance.status == 400 and (await provenance.json())["error"]["code"] == "invalid_cid"


async def test_a_malformed_run_id_is_a_documented_400(client: Client, auth: dict[str, str]) -> None:
    """`DELETE /runs/%C2%84` answered 400, undocumented for that operation: every operation now
    documents 400 (at least a malformed request)."""
    conforms = Conformance(await (await client.get("/openapi.json")).json())
    for method in ("get", "delete"):
        answer = await client.request(method, "/runs/%C2%84", headers=auth)
        assert answer.status == 400
        await conforms.check(answer, method, "/runs/{run_id}")


@pytest.mark.parametrize(
    ("call", "body", "field"),
    [
        ("GET /activities?limit=%C2%B2", None, "limit"),  # '²' passed isdigit(), then int() raised: 500
        ("GET /cache?limit=%D9%A3", None, "limit"),  # an Arabic-Indic 3 passed \d: 200
        ("POST /runs", {"recipe": "invert", "output_name": ""}, "output_name"),  # "" meant no name
        ("POST /runs", {"recipe": "invert", "params": None}, "params"),  # null meant no params
    ],
)
async def test_what_the_document_calls_invalid_is_refused(
    client: Client, auth: dict[str, str], call: str, body: Any, field: str
) -> None:
    method, _, path = call.partition(" ")
    answer = await client.request(method, path, json=body, headers=auth)
    assert answer.status == 400, await answer.text()
    assert (await answer.json())["error"]["details"]["field"] == field


async def test_an_upload_name_is_taken_as_sent(client: Client, auth: dict[str, str]) -> None:
    """A form field `name` with spaces around it was trimmed and taken; the document's pattern
    has no spaces, so it is refused; empty (the web UI's blank field) means no name."""
    for name, status in ((" cat", 400), ("", 201)):
        form = aiohttp.FormData()
        form.add_field("name", name)
        form.add_field("file", png_bytes(np.full((4, 4, 3), len(name), np.uint8)), filename="f")
        answer = await client.post("/cache/upload", data=form, headers=auth)
        assert answer.status == status, await answer.text()
        assert "name" not in await answer.json()


async def test_run_events_match_the_documented_event(client: Client, auth: dict[str, str]) -> None:
    """The event stream was documented as one string; schemathesis reads it as events, each
    checked against the schema: now `RunEvent` (kind, id, and the event as JSON)."""
    document = await (await client.get("/openapi.json")).json()
    conforms = Conformance(document)
    form = aiohttp.FormData()
    form.add_field("file", png_bytes(np.full((8, 8, 3), 7, np.uint8)), filename="f")
    image = await (await client.post("/cache/upload", data=form, headers=auth)).json()
    started = await (
        await client.post("/runs", json={"recipe": "identity", "inputs": [image["cid"]]}, headers=auth)
    ).json()
    events = await sse(client, started["run_id"])
    assert events[-1][1] == "run_completed"
    schema = {"$ref": "urn:api#/components/schemas/RunEvent"}
    validator = Draft202012Validator(schema, registry=conforms.registry)
    content_schema = document["components"]["schemas"]["RunEvent"]["properties"]["data"]["contentSchema"]
    for event_id, kind, data in events:
        validator.validate({"event": kind, "id": event_id, "data": json.dumps(data)})
        Draft202012Validator(content_schema).validate(data)
