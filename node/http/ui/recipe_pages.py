"""``/recipes`` and ``/recipe/{id}`` for browsers: uploaded recipes and built-in effects, each
with a run form (a field per variable input and per effect parameter), and one recipe's YAML
and DAG."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import yaml
from aiohttp import web

from node.errors import NotFound
from node.executor.binding import read_recipe
from node.executor.recipe import Recipe
from node.executor.recipe_store import summary as recipe_summary
from node.http.appkeys import NODE
from node.http.cache import int_param
from node.http.ui.choices import media_choices
from node.http.ui.dag import DagNode, DagPicture, layout
from node.http.ui.run_pages import step_detail, user_may_change
from node.http.ui.templating import page
from node.http.ui.users import current_user
from node.pixels.effects import EFFECTS

PAGE_SIZE = 50


@page("recipes.html")
async def recipes_page(request: web.Request) -> dict[str, Any]:
    offset = int_param(request, "offset", 0, 0, 10**6)
    recipes = await request.app[NODE].recipes.listing(offset, PAGE_SIZE + 1)
    return {
        "recipes": recipes[:PAGE_SIZE],
        "offset": offset,
        "page_size": PAGE_SIZE,
        "more": len(recipes) > PAGE_SIZE,
        "effects": [effect.schema() for _, effect in sorted(EFFECTS.items())],
        "media": await media_choices(request.app),
    }


@page("recipe.html")
async def recipe_page(request: web.Request) -> dict[str, Any]:
    """An uploaded recipe, or any recipe a run used (a built-in effect's is stored as JSON)."""
    ref = request.match_info["id"]
    try:
        summary, recipe, text = await request.app[NODE].recipes.get(ref)
        uploaded = True
    except NotFound:  # read only: an effect's name is not looked up (that would store its recipe)
        store = request.app[NODE].store
        entry = await store.resolve(ref)
        recipe, data = await read_recipe(store, entry, ref, "id")
        summary = recipe_summary(entry.cid, {"content_id": entry.content_id}, recipe)
        text, uploaded = await asyncio.to_thread(_as_yaml, data), False
    user = await current_user(request)
    return {
        "recipe": summary,
        "yaml": text,
        "uploaded": uploaded,
        # an uploaded recipe runs at its own URL; any other by CID through POST /runs
        "run_api": f"/recipes/{summary['id']}/run" if uploaded else "/runs",
        "picture": recipe_picture(recipe),
        "media": await media_choices(request.app),
        "may_change": uploaded and user_may_change(user, summary["owner"]),
    }


def _as_yaml(data: bytes) -> str:
    """A recipe stored as canonical JSON (a built-in effect's) shown as the YAML it equals; any
    other (YAML uploaded and since forgotten, or stored as content) as it is."""
    try:
        return yaml.safe_dump(json.loads(data), sort_keys=False, allow_unicode=True)
    except ValueError:
        return data.decode("utf-8", "replace")


def recipe_picture(recipe: Recipe) -> DagPicture:
    """The recipe as a DAG picture; the ANALYZE nodes a node's bindings or cuts read are its
    inputs too."""
    nodes = [
        DagNode(
            id=node.id, kind=node.type, inputs=node.depends_on, detail=step_detail(node.type, node.config)
        )
        for node in recipe.nodes
    ]
    return layout(nodes, recipe.output)
