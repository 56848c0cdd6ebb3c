"""Uploaded recipes (the seeds' "configs"): validated YAML kept in IPFS, indexed by CID."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis.asyncio as aioredis

from node.errors import Forbidden, InvalidInput, NotFound
from node.executor.recipe import MAX_RECIPE_BYTES, NODE_ID, Recipe, parse_recipe
from node.pixels.effects import EFFECTS
from node.store.cid import is_content_id, normalize_cid
from node.store.content import ContentStore
from node.store.errors import InvalidCid
from node.sync.connection import redis_errors
from node.sync.keys import Keys
from node.timestamps import utc_text


class RecipeNotFound(NotFound):
    code = "recipe_not_found"


class AmbiguousRecipe(InvalidInput):
    code = "ambiguous_recipe"


class RecipeStore:
    """Adds, lists, reads and forgets uploaded recipes; the bytes themselves stay in the store."""

    def __init__(self, store: ContentStore, client: aioredis.Redis, keys: Keys) -> None:
        self._store = store
        self._redis = client
        self._keys = keys

    async def add(self, data: bytes, owner: str, quota: int = 0) -> dict[str, Any]:
        """Validate (RecipeError naming node and field), store (within ``owner``'s ``quota``
        bytes, 0: none), index; the recipe's summary."""
        recipe = await asyncio.to_thread(parse_recipe, data)  # up to 256 KiB of YAML: not on the loop

        entry = (await self._store.put_bytes(data, max_size=MAX_RECIPE_BYTES, owner=owner, quota=quota)).entry
        info = {
            "name": recipe.name,
            "version": recipe.version,
            "owner": owner,
            "content_id": entry.content_id,
            "created": repr(time.time()),
        }
        with redis_errors():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hsetnx(self._keys.recipe(entry.cid), "created", info["created"])
                pipe.hset(
                    self._keys.recipe(entry.cid), mapping={k: v for k, v in info.items() if k != "created"}
                )
                pipe.zadd(self._keys.recipes, {entry.cid: float(info["created"])}, nx=True)
                await pipe.execute()
        return summary(entry.cid, info, recipe)

    async def get(self, ref: str) -> tuple[dict[str, Any], Recipe, str]:
        """(summary, recipe, YAML text) of an uploaded recipe, by CID or SHA3-256 hex."""
        entry = await self._store.resolve(ref)
        with redis_errors():
            info = await self._redis.hgetall(self._keys.recipe(entry.cid))
        if not info:
            raise RecipeNotFound(f"no uploaded recipe {ref!r}", ref=ref)
        data = await self._store.read_all(entry, MAX_RECIPE_BYTES)
        recipe = await asyncio.to_thread(parse_recipe, data)
        fields = {str(key): value for key, value in info.items()}
        return summary(entry.cid, fields, recipe), recipe, data.decode("utf-8", "replace")

    async def listing(self, offset: int, limit: int) -> list[dict[str, Any]]:
        with redis_errors():
            cids = [
                str(cid)
                for cid in await self._redis.zrevrange(self._keys.recipes, offset, offset + limit - 1)
            ]
            async with self._redis.pipeline(transaction=False) as pipe:
                for cid in cids:
                    pipe.hgetall(self._keys.recipe(cid))
                rows = await pipe.execute()
        return [{"id": cid, "cid": cid, **dict(row)} for cid, row in zip(cids, rows, strict=True) if row]

    async def named(self, name: str) -> list[dict[str, Any]]:
        """Every upload still listed under the recipe name ``name``, newest first (id, owner,
        created): read from the listing, so a deleted upload is not one."""
        with redis_errors():
            cids = [str(cid) for cid in await self._redis.zrevrange(self._keys.recipes, 0, -1)]
            async with self._redis.pipeline(transaction=False) as pipe:
                for cid in cids:
                    pipe.hmget(self._keys.recipe(cid), ["name", "owner", "created"])
                rows = await pipe.execute()
        return [
            {"id": cid, "name": row[0], "owner": row[1] or "", "created": float(row[2] or 0)}
            for cid, row in zip(cids, rows, strict=True)
            if row[0] == name
        ]

    async def by_name(self, name: str, user: str) -> str | None:
        """The id of the recipe a run names ``name``: the newest upload of that name by
        ``user``, else the newest by anyone if one owner uploaded them all; None if there is
        none; AmbiguousRecipe (listing each, with its date) if several others have."""
        candidates = await self.named(name)
        if not candidates:
            return None
        own = [item for item in candidates if item["owner"] == user]
        if own or len({item["owner"] for item in candidates}) == 1:
            return str((own or candidates)[0]["id"])
        listed = "; ".join(
            f"{item['id']} by {item['owner'] or '?'}, {utc_text(item['created'])}" for item in candidates[:10]
        )
        raise AmbiguousRecipe(
            f"several users uploaded a recipe named {name!r}, none of them you: give its id ({listed})",
            field="recipe",
        )

    async def delete(self, ref: str, user: str, *, admin: bool) -> str:
        """Forget an uploaded recipe (owner or admin); its bytes stay, for the provenance of runs."""
        summary_, _, _ = await self.get(ref)
        if not admin and summary_["owner"] != user:
            raise Forbidden("only the recipe's owner or an admin may delete it", ref=ref)
        cid = str(summary_["id"])
        with redis_errors():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(self._keys.recipe(cid))
                pipe.zrem(self._keys.recipes, cid)
                await pipe.execute()
        return cid


def is_recipe_name(ref: str) -> bool:
    """Whether a run's ``recipe`` could only be an uploaded recipe's name: not a built-in
    effect, a CID or a SHA3-256 hex."""
    if ref in EFFECTS or not NODE_ID.fullmatch(ref) or is_content_id(ref):
        return False
    try:
        normalize_cid(ref)
    except InvalidCid:
        return True
    return False


def summary(cid: str, info: dict[str, Any], recipe: Recipe) -> dict[str, Any]:
    """How the API describes an uploaded recipe."""
    return {
        "id": cid,
        "cid": cid,
        "name": recipe.name,
        "version": recipe.version,
        "description": recipe.description,
        "owner": info.get("owner", ""),
        "content_id": info.get("content_id", ""),
        "variables": list(recipe.variables),
        "nodes": [{"id": node.id, "type": node.type, "inputs": list(node.inputs)} for node in recipe.nodes],
        "output": recipe.output,
    }
