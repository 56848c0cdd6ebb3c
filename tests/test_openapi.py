"""The API describes itself: every route in /openapi.json, a valid document, and /docs served
by the node alone."""

from __future__ import annotations

import re

from openapi_spec_validator import validate

from node.http.openapi import described
from tests.helpers import Client

UI_ASSETS = re.compile(r'(?:src|href)="([^"]+)"')


async def test_every_route_is_in_the_document(client: Client) -> None:
    """The router's routes and the document's operations are the same set."""
    routes = {
        (route.method.lower(), route.resource.canonical)
        for route in client.app.router.routes()
        if route.method != "HEAD"
        and route.resource is not None
        and not route.resource.canonical.startswith("/docs/assets")
    }
    document = await (await client.get("/openapi.json")).json()
    operations = {(method, path) for path, item in document["paths"].items() for method in item}
    assert operations == routes
    assert len(routes) >= 30


async def test_the_document_is_valid_openapi(client: Client) -> None:
    document = await (await client.get("/openapi.json")).json()
    validate(document)  # raises on any problem
    assert document["openapi"].startswith("3.1")


async def test_every_operation_says_what_it_answers(client: Client) -> None:
    """A summary, at least one success, the error shape for its errors, auth where it writes."""
    document = await (await client.get("/openapi.json")).json()
    for path, item in document["paths"].items():
        for method, spec in item.items():
            assert spec["summary"], (method, path)
            successes = [status for status in spec["responses"] if status.startswith("2")]
            assert successes, (method, path)
            for status, answer in spec["responses"].items():
                if status.startswith(("4", "5")):
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, status)
            if method in ("post", "delete"):
                assert spec.get("security") == [{"bearer": []}], (method, path)


async def test_handlers_carry_their_own_description(client: Client) -> None:
    for route in client.app.router.routes():
        if route.method != "HEAD" and not route.resource.canonical.startswith("/docs/assets"):  # type: ignore[union-attr]
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
