"""Recipes over HTTP, under ``/recipes`` and, as the seeds call them, ``/configs``."""

from __future__ import annotations

from aiohttp import web

from node.executor.recipe import MAX_RECIPE_BYTES
from node.executor.recipe_store import RecipeStore
from node.http.appkeys import NODE
from node.http.auth import require_user
from node.http.bodies import read_small_body
from node.http.cache import int_param, read_upload_field
from node.http.limits import limits_of, quota_of
from node.http.openapi import operation
from node.http.params import path_parameter, ref_param
from node.http.runs import RUN_LIMITS, bound_submission, checked_output_name, read_json, run_response
from node.http.schemas import RECIPE_LINKS, RUN_LINKS, answer, json_body, page, ref
from node.http.ui.recipe_pages import recipes_page
from node.http.ui.templating import negotiated


@operation(
    "Store and validate a recipe (YAML as the body or multipart field file); its id is its CID",
    "recipes",
    {201: answer("The recipe", ref("RecipeSummary"), RECIPE_LINKS)},
    errors=(400, 409, 413, 503),
    auth=True,
    body={
        "required": True,
        "content": {
            "application/x-yaml": {"schema": {"type": "string"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            },
        },
    },
)
async def upload(request: web.Request) -> web.Response:
    """``POST /recipes/upload``: YAML as multipart field ``file``, or as the raw body."""
    user = await require_user(request)
    if request.content_type == "multipart/form-data":
        data = await read_upload_field(request, "file", MAX_RECIPE_BYTES)
    else:
        data = await read_small_body(request, MAX_RECIPE_BYTES)
    recipe = await request.app[NODE].recipes.add(data, owner=user.name, quota=quota_of(request, user))
    return web.json_response(recipe, status=201, headers={"Location": f"/recipes/{recipe['id']}"})


@operation(
    "Uploaded recipes, newest first",
    "recipes",
    {200: answer("A page of recipes", ref("RecipePage"))},
    errors=(400,),
    query=page(50, 500),
)
async def listing(request: web.Request) -> web.Response:
    offset = int_param(request, "offset", 0, 0, 10**6)
    limit = int_param(request, "limit", 50, 1, 500)
    return web.json_response({"items": await request.app[NODE].recipes.listing(offset, limit)})


@operation(
    "A recipe: its DAG and its YAML", "recipes", {200: answer("The recipe", ref("Recipe"))}, errors=(400,)
)
async def detail(request: web.Request) -> web.Response:
    """``GET /recipes/{id}``: summary, DAG and the YAML as uploaded."""
    summary, _, text = await request.app[NODE].recipes.get(ref_param(request, "id"))
    return web.json_response({**summary, "yaml": text})


@operation(
    "Forget a recipe (its bytes stay, for its runs' provenance)",
    "recipes",
    {200: answer("Forgotten", ref("Deleted"))},
    errors=(400, 403),
    auth=True,
)
async def delete(request: web.Request) -> web.Response:
    user = await require_user(request)
    store: RecipeStore = request.app[NODE].recipes
    cid = await store.delete(ref_param(request, "id"), user.name, admin=user.is_admin)
    return web.json_response({"deleted": cid})


@operation(
    "Run a recipe with these inputs",
    "recipes",
    {202: answer("Queued", ref("RunStarted"), RUN_LINKS)},
    errors=(400, 409, 413, 429, 503),
    description=RUN_LIMITS,
    auth=True,
    body=json_body(ref("RecipeRunRequest")),
)
async def run(request: web.Request) -> web.Response:
    """``POST /recipes/{id}/run`` ``{"inputs": ..., "output_name": ...}``: like ``POST /runs``."""
    user = await require_user(request)
    await request.app[NODE].run_manager.check_capacity(owner=user.name, limits=limits_of(request, user))
    body = await read_json(request)
    summary, recipe, _ = await request.app[NODE].recipes.get(ref_param(request, "id"))
    entry = await request.app[NODE].store.resolve(summary["id"])
    output_name = checked_output_name(body, {"inputs", "output_name"})
    inputs = body.get("inputs", [])
    submission = await bound_submission(request, user, recipe, entry, inputs=inputs, output_name=output_name)
    return run_response(await request.app[NODE].run_manager.submit(submission))


def add_routes(app: web.Application) -> None:
    recipe_id = path_parameter("id", "upload")
    for prefix in ("/recipes", "/configs"):
        name = prefix.strip("/")
        app.router.add_post(f"{prefix}/upload", upload, name=f"{name}-upload")
        pages = negotiated(listing, recipes_page) if prefix == "/recipes" else listing
        app.router.add_get(prefix, pages, name=f"{name}-list")
        app.router.add_get(f"{prefix}/{recipe_id}", detail, name=f"{name}-get")
        app.router.add_delete(f"{prefix}/{recipe_id}", delete, name=f"{name}-delete")
        app.router.add_post(f"{prefix}/{{id}}/run", run, name=f"{name}-run")
