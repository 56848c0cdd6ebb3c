"""Recipes under /recipes and /configs: upload, list, read, run with named inputs, delete."""

from __future__ import annotations

import aiohttp
import pytest

from node.pixels.imaging import png_bytes
from tests.conftest import L2_PUBLIC_URL
from tests.helpers import Client, sse, upload
from tests.l2_server import TestL2
from tests.test_runs_api import PIXELS, RECIPE


@pytest.mark.parametrize("prefix", ["/recipes", "/configs"])
async def test_recipe_lifecycle(client: Client, auth: dict[str, str], prefix: str) -> None:
    """Upload YAML (raw body), list it, read it back with its DAG, run it, delete it."""
    created = await client.post(f"{prefix}/upload", data=RECIPE, headers=auth)
    assert created.status == 201
    recipe = await created.json()
    assert recipe["name"] == "two-in" and recipe["variables"] == ["base", "top"]
    assert recipe["id"] == recipe["cid"] and recipe["owner"] == "admin"
    listed = (await (await client.get(prefix)).json())["items"]
    assert [item["id"] for item in listed] == [recipe["id"]]
    detail = await (await client.get(f"{prefix}/{recipe['id']}")).json()
    assert detail["yaml"] == RECIPE and [node["id"] for node in detail["nodes"]] == ["base", "top", "out"]
    base = await upload(client, auth, png_bytes(PIXELS), name="base-image")
    top = await upload(client, auth, png_bytes(255 - PIXELS))
    run = await client.post(
        f"{prefix}/{recipe['id']}/run",
        json={"inputs": {"base": "base-image", "top": top["cid"]}},
        headers=auth,
    )
    assert run.status == 202
    assert (await sse(client, (await run.json())["run_id"]))[-1][1] == "run_completed"
    assert base["name"] == "base-image"
    assert (await client.delete(f"{prefix}/{recipe['id']}")).status == 401
    assert (await client.delete(f"{prefix}/{recipe['id']}", headers=auth)).status == 200
    assert (await client.get(f"{prefix}/{recipe['id']}")).status == 404


async def test_invalid_recipe_upload_names_node_and_field(client: Client, auth: dict[str, str]) -> None:
    bad = RECIPE.replace("mode: multiply", "mode: glow")
    response = await client.post("/recipes/upload", data=bad, headers=auth)
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == "invalid_recipe"
    assert error["details"] == {"node": "out", "field": "config.mode"}
    assert (await (await client.get("/recipes")).json())["items"] == []


async def test_recipe_upload_as_multipart(client: Client, auth: dict[str, str]) -> None:
    form = aiohttp.FormData()
    form.add_field("file", RECIPE.encode(), filename="recipe.yaml")
    response = await client.post("/configs/upload", data=form, headers=auth)
    assert response.status == 201
    assert (await response.json())["name"] == "two-in"


SCREEN = RECIPE.replace("mode: multiply", "mode: screen")  # the same name, other bytes


async def _uploaded(client: Client, headers: dict[str, str], text: str) -> str:
    created = await client.post("/recipes/upload", data=text, headers=headers)
    assert created.status == 201, await created.text()
    return str((await created.json())["id"])


async def _run_by_name(
    client: Client, headers: dict[str, str], inputs: dict[str, str]
) -> aiohttp.ClientResponse:
    return await client.post("/runs", json={"recipe": "two-in", "inputs": inputs}, headers=headers)


async def test_a_run_names_an_uploaded_recipe_by_its_name(client: Client, auth: dict[str, str]) -> None:
    """POST /runs with an uploaded recipe's name runs its newest upload; once that is deleted,
    the one before; a name nobody uploaded is 404 saying what a recipe can be."""
    first = await _uploaded(client, auth, RECIPE)
    newest = await _uploaded(client, auth, SCREEN)
    base = await upload(client, auth, png_bytes(PIXELS))
    inputs = {"base": base["cid"], "top": base["cid"]}
    run = await _run_by_name(client, auth, inputs)
    assert run.status == 202, await run.text()
    assert (await run.json())["recipe"] == {"name": "two-in", "cid": newest}
    assert (await client.delete(f"/recipes/{newest}", headers=auth)).status == 200
    again = await _run_by_name(client, auth, inputs)
    assert (await again.json())["recipe"] == {"name": "two-in", "cid": first}
    missing = await client.post("/runs", json={"recipe": "split-fx", "inputs": inputs}, headers=auth)
    assert missing.status == 404
    assert "nor the name, id or CID of a recipe uploaded here" in (await missing.json())["error"]["message"]


async def test_a_name_several_others_uploaded_is_ambiguous(l2_node: Client, l2: TestL2) -> None:
    """Alice and Bob each upload a recipe named two-in: each of them runs their own by name;
    Carol, who has none, gets 400 ambiguous_recipe listing both with owner and date."""
    alice, bob, carol = (
        {"Authorization": f"Bearer {l2.issue(user, L2_PUBLIC_URL)}"} for user in ("alice", "bob", "carol")
    )
    alices, bobs = await _uploaded(l2_node, alice, RECIPE), await _uploaded(l2_node, bob, SCREEN)
    base = await upload(l2_node, alice, png_bytes(PIXELS))
    inputs = {"base": base["cid"], "top": base["cid"]}
    for headers, own in ((alice, alices), (bob, bobs)):
        run = await _run_by_name(l2_node, headers, inputs)
        assert (await run.json())["recipe"]["cid"] == own
    refused = await _run_by_name(l2_node, carol, inputs)
    assert refused.status == 400
    error = (await refused.json())["error"]
    assert error["code"] == "ambiguous_recipe" and error["details"]["field"] == "recipe"
    assert f"{alices} by @alice@" in error["message"] and f"{bobs} by @bob@" in error["message"]
