"""Segment-parallel plans: a long single-input video chain as parts over exact frame ranges.

A step that applies per-frame filters to a whole clip (a fused ``CHAIN``, or one EFFECT with an
ffmpeg filter, RESIZE, or TRANSFORM at speed 1) reading a SOURCE clip longer than the segment
length is planned as (docs/recipes-and-media.md "Segments"):

- ``PART`` steps, one per range of frames ``[a, b)``: each decodes only its range (an input
  seek, then frame-exact trimming), applies the chain and writes its picture: lossless, or the
  delivery encode with a closed GOP from its first frame and the settings every part shares;
- a ``SOUND`` step: the clip's sound, once, cut or padded to the picture's length and encoded
  as the output's (a per-part AAC would click at the joins);
- a ``JOIN`` step, named as the chain was: the parts joined by stream copy, the sound muxed in.

A parameter bound to an analysis (sent to its filter by command) is evaluated at the absolute
frame index: each part reads the analysis too, and takes its slice of the curve. Each is an
ordinary claimed step with its own cache id, so every node of a cluster takes some,
a node that dies loses only the part it held, and a render started again reuses the parts done.
Steps after the chain read the join instead; their cache ids are computed again from it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from cachetools import LRUCache

from node.executor.planner import CHAIN, Plan, Step, on_raw_frames, plan_id_of, step_cache_id
from node.media.errors import MediaError
from node.media.kinds import kind_of
from node.media.probe import count_frames, probe_file
from node.store.content import ContentStore
from node.store.local_cache import LocalCache
from node.sync.index import ContentEntry

PART, SOUND, JOIN = "PART", "SOUND", "JOIN"
PARTS_VERSION = "1"
MAX_PARTS = 10_000


@dataclass(frozen=True)
class ClipFacts:
    """What planning parts needs to know of a SOURCE clip (probed at submission)."""

    frames: int
    fps: Fraction
    sample_rate: int  # 0: no sound


_known: LRUCache[str, ClipFacts | None] = LRUCache(maxsize=4096)  # content never changes


async def clip_facts(
    media_types: Mapping[str, str], store: ContentStore, cache: LocalCache
) -> dict[str, ClipFacts]:
    """The constant-frame-rate video clips among the sources (content id -> its facts); a clip
    that cannot be probed, or whose frame rate varies, is left out (it is not segmented). A
    clip is probed once (counting its frames reads it whole), then remembered."""
    facts = {}
    for content_id, media_type in media_types.items():
        if kind_of(media_type) != "video":
            continue
        if content_id not in _known:
            entry = await store.index.get(content_id)
            if entry is None:  # gone meanwhile: the run's submission will say so
                continue
            _known[content_id] = await _probed(entry, cache)
        if (known := _known[content_id]) is not None:
            facts[content_id] = known
    return facts


async def _probed(entry: ContentEntry, cache: LocalCache) -> ClipFacts | None:
    try:
        return await asyncio.to_thread(_probe, await cache.materialize(entry))
    except MediaError:
        return None


def _probe(path: Any) -> ClipFacts | None:
    info = probe_file(path)
    if info.kind != "video" or info.video is None or info.video.variable_rate:
        return None
    return ClipFacts(count_frames(path, info), info.fps, info.sample_rate)


def segmented(plan: Plan, facts: Mapping[str, ClipFacts], segment_s: float, tools: Mapping[str, str]) -> Plan:
    """``plan`` with each long per-frame chain over a SOURCE clip planned as parts, sound and a
    join; the steps after it read the join (their cache ids computed again)."""
    renamed: dict[str, str] = {}
    steps: list[Step] = []
    sources = {step.cache_id for step in plan.steps if step.type == "SOURCE"}
    for planned in plan.steps:
        step = _reading(planned, renamed)
        clip = facts.get(step.inputs[0]) if _one_clip(step, sources) else None
        size = max(1, round(segment_s * clip.fps)) if clip is not None else 0
        if clip is None or not segmentable(step) or clip.frames <= size:
            steps.append(step)
            renamed[planned.cache_id] = step.cache_id
            continue
        parts = _parts(step, clip, size, tools)
        steps += parts
        renamed[planned.cache_id] = parts[-1].cache_id
    output = renamed.get(plan.output, plan.output)
    return Plan(plan_id_of(plan.recipe_id, steps, output), plan.recipe_id, tuple(steps), output)


def _one_clip(step: Step, sources: set[str]) -> bool:
    """The step reads one SOURCE clip (and, if bound, its analyses)."""
    clips = len(step.inputs) - len(step.config.get("analyses", ()))
    return clips == 1 and step.inputs[0] in sources


def segmentable(step: Step) -> bool:
    """A video step of per-frame filters on one input, whose frames map one to one."""
    if step.config.get("encode") not in ("lossless", "delivery"):
        return False
    ops: list[Mapping[str, Any]] = (
        step.config["ops"] if step.type == CHAIN else [{"type": step.type, "config": step.config}]
    )
    return all(_per_frame(str(op["type"]), op["config"]) for op in ops)


def _per_frame(kind: str, config: Mapping[str, Any]) -> bool:
    if kind == "EFFECT":  # an ffmpeg filter; bound parameters, if any, sent to it by command
        return config["effect"] != "identity" and not on_raw_frames(config)  # identity: zero-copy
    if kind == "TRANSFORM":
        return bool(config["speed"] == 1.0)
    return kind == "RESIZE"


def _reading(step: Step, renamed: Mapping[str, str]) -> Step:
    """``step`` reading the renamed steps, its cache id computed again if any changed."""
    inputs = tuple(renamed.get(input_id, input_id) for input_id in step.inputs)
    config = dict(step.config)
    if config.get("expansion") in renamed:  # a cut's EXPAND step was computed again
        config["expansion"] = renamed[config["expansion"]]
    if inputs == step.inputs and config == dict(step.config):
        return step
    return _step(
        step.node_id, step.type, step.type_version, config, inputs, step.runtime, step.level, step.fused
    )


def _parts(step: Step, clip: ClipFacts, size: int, tools: Mapping[str, str]) -> list[Step]:
    source, encode = step.inputs[0], step.config["encode"]
    ops = step.config["ops"] if step.type == CHAIN else [_op(step)]
    ranges = [(first, min(first + size, clip.frames)) for first in range(0, clip.frames, size)]
    if len(ranges) > MAX_PARTS:
        ranges = []  # never: a clip of 10,000 segments; planned whole
    media = {"ffmpeg": tools.get("ffmpeg", "unknown")}
    parts = [
        _step(
            f"{step.node_id}@{index}",
            PART,
            PARTS_VERSION,
            {"ops": ops, "frames": [first, end], "encode": encode},
            (source, *step.inputs[1:]),  # the clip, and the analyses bound parameters read
            step.runtime,
            step.level,
            step.fused,
        )
        for index, (first, end) in enumerate(ranges)
    ]
    timing = {"frames": clip.frames, "fps": str(clip.fps), "encode": encode}
    sound = (
        [_step(f"{step.node_id}@sound", SOUND, PARTS_VERSION, timing, (source,), media, step.level)]
        if clip.sample_rate
        else []
    )
    joined = (*(part.cache_id for part in parts), *(item.cache_id for item in sound))
    join = _step(step.node_id, JOIN, PARTS_VERSION, timing, joined, media, step.level + 1, step.fused)
    return [*sound, *parts, join]  # the sound first: it gets a worker early, not after the last part


def _op(step: Step) -> dict[str, Any]:
    config = {key: value for key, value in step.config.items() if key != "encode"}
    return {"type": step.type, "type_version": step.type_version, "config": config}


def _step(  # noqa: PLR0917 - a step's fields
    node_id: str,
    type_name: str,
    type_version: str,
    config: Mapping[str, Any],
    inputs: Sequence[str],
    runtime: Mapping[str, str],
    level: int,
    fused: tuple[str, ...] = (),
) -> Step:
    cache_id = step_cache_id(type_name, type_version, config, inputs, runtime)
    return Step(cache_id, node_id, type_name, type_version, config, tuple(inputs), runtime, level, fused)
