"""Turning a client's run request into a Submission: which recipe, which content for each SOURCE.

A recipe is named by a built-in effect name, or by the CID or SHA3-256 hex of recipe bytes this
node holds. An input ref is a CID, a SHA3-256 hex of content this node holds, or an asset name.
Inputs fill the recipe's variable inputs: a list in recipe order, or ``{name: ref}``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from node.canonical import canonical_json
from node.errors import InvalidInput
from node.executor.admission import NO_LIMITS, OwnerLimits
from node.executor.media_checks import check_crossfades
from node.executor.recipe import (
    MAX_RECIPE_BYTES,
    Recipe,
    builtin_document,
    parse_recipe,
    recipe_from_document,
)
from node.executor.run_manager import Submission
from node.pixels.effects import EFFECTS
from node.pixels.params import normalize_params
from node.store.cid import is_content_id
from node.store.content import ContentStore
from node.store.errors import ContentNotFound, InvalidCid
from node.store.local_cache import LocalCache
from node.sync.index import ContentEntry
from node.sync.keys import ASSET_NAME


async def resolve_recipe(store: ContentStore, ref: str, params: Any = None) -> tuple[Recipe, ContentEntry]:
    """The recipe ``ref`` names and the entry of its bytes in the store; ``params`` set a
    built-in effect's parameters (a recipe's are in its YAML)."""
    if params is not None and (ref not in EFFECTS or not isinstance(params, dict)):
        problem = "an object" if ref in EFFECTS else "for a built-in effect; a recipe's are in its YAML"
        raise InvalidInput(f"params are {problem}", field="params")
    if ref in EFFECTS:
        normalized, problems = normalize_params(EFFECTS[ref].params, params or {})
        if problems:  # named as the request names them, not as the generated recipe would
            name, problem = min(problems.items())
            raise InvalidInput(f"params.{name}: {problem}", field=f"params.{name}")
        # The values given, normalized (sigma 5 and 5.0 are one recipe, one plan); the others
        # stay out, so a run without params has the document it always had.
        document = builtin_document(ref, {name: normalized[name] for name in params or {}})
        recipe = recipe_from_document(document)
        stored = await store.put_bytes(canonical_json(document), max_size=MAX_RECIPE_BYTES)
        return recipe, stored.entry
    try:
        entry = await store.resolve(ref)
    except (ContentNotFound, InvalidCid) as exc:
        raise ContentNotFound(
            f"no recipe {ref!r}: not a built-in effect, nor the name, id or CID of a recipe uploaded "
            "here (GET /recipes lists them)",
            field="recipe",
        ) from exc
    recipe, _ = await read_recipe(store, entry, ref, "recipe")
    return recipe, entry


async def read_recipe(store: ContentStore, entry: ContentEntry, ref: str, field: str) -> tuple[Recipe, bytes]:
    """The recipe stored as ``entry`` (named ``ref`` in the request's ``field``) and its bytes;
    400 if it is too large or no recipe (naming the problem)."""
    if entry.size > MAX_RECIPE_BYTES:
        raise InvalidInput(f"{ref} is {entry.size} bytes: too large for a recipe", field=field)
    data = await store.read_all(entry, MAX_RECIPE_BYTES)
    return await asyncio.to_thread(parse_recipe, data), data


async def resolve_input(store: ContentStore, ref: Any, field: str) -> ContentEntry:
    """The content an input ref names: CID, SHA3-256 hex, asset name, or a run's output name
    (the newest output of that name; an asset name of the same spelling wins)."""
    if not isinstance(ref, str) or not ref:
        raise InvalidInput("an input is a CID, a SHA3-256 hex or an asset name", field=field)
    if ASSET_NAME.fullmatch(ref) and not is_content_id(ref):
        # a name wins over an odd CID spelling
        content_id = await store.index.asset(ref) or await store.index.output_named(ref)
        if content_id is not None:
            ref = content_id
    try:
        return await store.resolve(ref)
    except InvalidCid as exc:
        raise ContentNotFound(f"no content or asset {ref!r} on this node", field=field) from exc
    except ContentNotFound as exc:
        raise ContentNotFound(exc.message, field=field) from exc


async def bind(
    store: ContentStore,
    recipe: Recipe,
    recipe_entry: ContentEntry,
    *,
    inputs: Any,
    owner: str,
    output_name: str,
    cache: LocalCache | None = None,
    priority: int = 0,
    callback: str = "",
    limits: OwnerLimits = NO_LIMITS,
) -> Submission:
    """A Submission with every SOURCE bound: variables from ``inputs``, others from the recipe.
    With ``cache``, what the recipe asks of its media is checked against the inputs now
    (``node.executor.media_checks``: a crossfade longer than a clip is a 400, not a failed run)."""
    variables = {node.variable: node.id for node in recipe.nodes if node.variable is not None}
    refs = _input_refs(list(variables), inputs)
    entries: dict[str, ContentEntry] = {}
    for name, (ref, field) in refs.items():
        entries[variables[name]] = await resolve_input(store, ref, field)
    for node in recipe.nodes:
        if node.type == "SOURCE" and node.variable is None:
            entries[node.id] = await _fixed_source(store, recipe, node.config)
    if cache is not None:
        await check_crossfades(recipe, entries, cache)
    return Submission(
        recipe,
        recipe_entry,
        {node_id: entry.content_id for node_id, entry in entries.items()},
        owner=owner,
        output_name=output_name,
        media_types={entry.content_id: entry.media_type for entry in entries.values()},
        priority=priority,
        callback=callback,
        limits=limits,
    )


def _input_refs(names: list[str], inputs: Any) -> dict[str, tuple[Any, str]]:
    if isinstance(inputs, list):
        if len(inputs) != len(names):
            wanted = ", ".join(names) or "none"
            raise InvalidInput(
                f"the recipe takes {len(names)} inputs ({wanted}), got {len(inputs)}", field="inputs"
            )
        return {
            name: (ref, f"inputs[{index}]")
            for index, (name, ref) in enumerate(zip(names, inputs, strict=True))
        }
    if isinstance(inputs, dict):
        unknown = sorted(set(inputs) - set(names))
        missing = sorted(set(names) - set(inputs))
        if unknown or missing:
            problem = f"unknown {unknown}" if unknown else f"missing {missing}"
            raise InvalidInput(f"named inputs must be exactly {names}: {problem}", field="inputs")
        return {name: (inputs[name], f"inputs.{name}") for name in names}
    raise InvalidInput("inputs are a list of refs or an object {name: ref}", field="inputs")


async def _fixed_source(store: ContentStore, recipe: Recipe, config: Mapping[str, Any]) -> ContentEntry:
    if "cid" in config:
        return await resolve_input(store, config["cid"], "recipe")
    asset = str(config["asset"])
    registered = recipe.assets.get(asset, {})
    ref = registered.get("hash") or registered.get("cid") or asset
    return await resolve_input(store, ref, "recipe")
