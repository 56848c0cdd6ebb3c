"""What a recipe asks of its media that can be checked when the run is submitted, from the
inputs themselves, so it is a 400 naming the node and field rather than a failed run later.

A SEQUENCE's crossfade must be shorter than each clip it joins. A clip that is a SOURCE input,
or a SOURCE through steps that keep its length (EFFECT, RESIZE), is probed now (ffprobe in a
thread, on the local copy of its bytes); other clips' lengths are known only once rendered, and
the step itself refuses a crossfade too long for them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from node.executor.errors import RecipeError
from node.executor.recipe import Recipe, RecipeNode
from node.media.errors import MediaError
from node.media.kinds import kind_of
from node.media.probe import probe_file
from node.store.local_cache import LocalCache
from node.sync.index import ContentEntry

KEEPS_LENGTH = frozenset({"EFFECT", "RESIZE"})  # a single input's steps that keep its duration


async def check_crossfades(recipe: Recipe, sources: Mapping[str, ContentEntry], cache: LocalCache) -> None:
    """RecipeError (400) if a SEQUENCE's crossfade is as long as a clip it joins, for the clips
    whose length the inputs tell; ``sources`` maps SOURCE node ids to their content."""
    nodes = {node.id: node for node in recipe.nodes}
    durations: dict[str, float | None] = {}
    for node in recipe.nodes:
        crossfade = float(node.config.get("crossfade") or 0) if node.type == "SEQUENCE" else 0.0
        if crossfade <= 0:
            continue
        for input_id in node.inputs:
            source = _source_of(nodes, input_id)
            if source is None or source not in sources:
                continue
            if source not in durations:
                durations[source] = await _duration(sources[source], cache)
            length = durations[source]
            if length is not None and crossfade >= length:
                raise RecipeError(
                    f"a crossfade of {crossfade:g} s is as long as input {input_id!r} ({length:.2f} s) or "
                    "longer: make it shorter than the shortest clip",
                    node=node.id,
                    field="config.crossfade",
                )


def _source_of(nodes: Mapping[str, RecipeNode], node_id: str) -> str | None:
    """The SOURCE a node's clip is, through steps that keep its length; None otherwise."""
    node = nodes.get(node_id)
    while node is not None and node.type in KEEPS_LENGTH and len(node.inputs) == 1:
        node = nodes.get(node.inputs[0])
    return node.id if node is not None and node.type == "SOURCE" else None


async def _duration(entry: ContentEntry, cache: LocalCache) -> float | None:
    """A video or audio input's length in seconds; None for anything else or what cannot be
    probed (the step will say what is wrong with it)."""
    if kind_of(entry.media_type) not in ("video", "audio"):
        return None
    try:
        path = await cache.materialize(entry)
        return (await asyncio.to_thread(probe_file, path, entry.cid)).duration_s
    except MediaError:
        return None
