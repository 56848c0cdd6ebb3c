"""Recipes under /recipes and /configs: upload, list, read, run with named inputs, delete."""

from __future__ import annotations

import aiohttp
import pytest

from node.pixels.imaging import png_bytes
from tests.helpers import Client, sse, upload
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
