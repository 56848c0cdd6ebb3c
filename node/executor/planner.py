"""Plans: a recipe bound to its inputs, as steps with deterministic cache ids.

A step's cache id is the SHA3-256 of the canonical JSON of
``{type, type_version, config, inputs, runtime}`` (docs/design.md "Identifiers"):

- ``config`` is the normalized config (defaults filled in, numbers in one form; for EFFECT the
  effect's name, version and every parameter);
- ``inputs`` are the input steps' cache ids in DAG order (SEQUENCE(a, b) != SEQUENCE(b, a));
- ``runtime`` maps each tool whose version changes the output bytes to that version.

A SOURCE's cache id is its content id. Same recipe + same inputs + same runtime = same cache
ids = reuse. A SEQUENCE of more than two inputs becomes a balanced tree of pairwise steps, so
its halves are computed (and reused) independently. The plan id hashes the recipe's content id,
the step cache ids in order and the output's.

Media kinds (``node.media.kinds``) flow from the sources' media types through the DAG: a step
on video or audio runs in ffmpeg (runtime ``ffmpeg``), writes a lossless intermediate, or the
delivery encode if it is the plan's output (``config.encode``, so part of the cache id), and a
type that cannot take a kind is refused here, before anything runs. A chain of single-input
video steps whose intermediates nothing else uses is *fused* into one ``CHAIN`` step (one
ffmpeg pass: one decode, one encode); its ``fused`` field names the recipe nodes it covers.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy
from PIL import features

from node.canonical import canonical_id
from node.executor.errors import RecipeError
from node.executor.nodetypes import ANALYSIS_RUNTIME, IMAGE_RUNTIME, MEDIA_RUNTIME, NODE_TYPES
from node.executor.recipe import Recipe, RecipeNode
from node.media.curves import bound
from node.media.ffmpeg import ffmpeg_version
from node.media.kinds import Kind, kind_of
from node.media.video_effects import VIDEO_EFFECTS, commanded
from node.sync.keys import check_content_id

CHAIN = "CHAIN"
CHAIN_VERSION = "1"
EXPAND = "EXPAND"  # a SEGMENT's cuts from an analysis: the steps it adds (node.executor.expansion)
EXPAND_VERSION = "1"
FUSABLE = ("EFFECT", "RESIZE", "TRANSFORM", "SEGMENT")  # single-input types that are filter chains
FILTER_EFFECTS = frozenset(VIDEO_EFFECTS)  # the others run on raw frames through numpy


@dataclass(frozen=True)
class Step:
    """One unit of work: what to compute, from which cache ids, and where it sits in the DAG."""

    cache_id: str
    node_id: str
    type: str
    type_version: str
    config: Mapping[str, Any]
    inputs: tuple[str, ...]
    runtime: Mapping[str, str]
    level: int
    fused: tuple[str, ...] = ()  # a CHAIN's recipe nodes, in order

    @classmethod
    def from_record(cls, step: Mapping[str, Any]) -> Step:
        """The step a stored record describes (inverse of :meth:`record`)."""
        return cls(
            cache_id=step["cache_id"],
            node_id=step["node_id"],
            type=step["type"],
            type_version=step["type_version"],
            config=step["config"],
            inputs=tuple(step["inputs"]),
            runtime=step["runtime"],
            level=step["level"],
            fused=tuple(step.get("fused", ())),
        )

    @property
    def expansion(self) -> str:
        """For a SEGMENT cut at an analysis's events: the cache id of the EXPAND step whose
        record adds the pieces; its output is their join's (zero-copy). Else empty."""
        return str(self.config.get("expansion", ""))

    def record(self) -> dict[str, Any]:
        """The step as stored in a plan record."""
        extra = {"fused": list(self.fused)} if self.fused else {}
        return {
            **extra,
            "cache_id": self.cache_id,
            "node_id": self.node_id,
            "type": self.type,
            "type_version": self.type_version,
            "config": dict(self.config),
            "inputs": list(self.inputs),
            "runtime": dict(self.runtime),
            "level": self.level,
        }


@dataclass(frozen=True)
class Plan:
    """Steps in topological order (every step after its inputs); ``output`` is a cache id."""

    plan_id: str
    recipe_id: str
    steps: tuple[Step, ...]
    output: str

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Plan:
        """The plan a stored record describes (inverse of :meth:`record`)."""
        steps = tuple(Step.from_record(step) for step in record["steps"])
        return cls(record["plan_id"], record["recipe_id"], steps, record["output"])

    def record(self) -> dict[str, Any]:
        return {
            "plan_id": self.plan_id,
            "recipe_id": self.recipe_id,
            "output": self.output,
            "steps": [step.record() for step in self.steps],
        }


def tool_versions() -> dict[str, str]:
    """Versions of the tools that produce output bytes, as they are in this process (zlib:
    the one Pillow compresses PNG with, which decides the bytes of every image output)."""
    return dict(_tool_versions())


@functools.cache
def _tool_versions() -> tuple[tuple[str, str], ...]:
    # Read once: importlib.metadata reads package metadata from disk, and every plan and every
    # step (the runtime check) asks; the versions cannot change while the process runs.
    return (
        ("numpy", numpy.__version__),
        ("pillow", version("pillow")),
        ("zlib", features.version("zlib") or "none"),
        ("ffmpeg", ffmpeg_version()),
        *((name, _installed(name)) for name in ("librosa", "numba", "scipy")),
    )


def _installed(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "none"


def make_plan(
    recipe: Recipe,
    recipe_id: str,
    sources: Mapping[str, str],
    tools: Mapping[str, str] | None = None,
    media_types: Mapping[str, str] | None = None,
) -> Plan:
    """Bind ``sources`` (SOURCE node id -> content id) and compute every step's cache id.

    ``media_types`` (content id -> media type) gives the sources' kinds; a source without one
    counts as an image, as before video existed."""
    tools = tool_versions() if tools is None else tools
    planner = _Planner(recipe, sources, tools, media_types or {})
    for node in recipe.nodes:
        planner.add(node)
    steps = tuple(planner.steps)
    output = planner.cache_ids[recipe.output]
    return Plan(plan_id_of(recipe_id, steps, output), recipe_id, steps, output)


def step_cache_id(
    type_name: str,
    type_version: str,
    config: Mapping[str, Any],
    inputs: Sequence[str],
    runtime: Mapping[str, str],
) -> str:
    """A step's cache id (docs/design.md "Identifiers"): SHA3-256 of the canonical JSON of its
    type, type version, normalized config, input cache ids in DAG order and runtime."""
    return canonical_id(
        {
            "type": type_name,
            "type_version": type_version,
            "config": config,
            "inputs": list(inputs),
            "runtime": dict(runtime),
        }
    )


def plan_id_of(recipe_id: str, steps: Sequence[Step], output: str) -> str:
    """The plan id: the recipe's content id, every step's cache id in order, and the output's."""
    return canonical_id({"recipe": recipe_id, "steps": [step.cache_id for step in steps], "output": output})


class _Planner:
    def __init__(
        self,
        recipe: Recipe,
        sources: Mapping[str, str],
        tools: Mapping[str, str],
        media_types: Mapping[str, str],
    ) -> None:
        self._sources = sources
        self._tools = tools
        self._media_types = media_types
        self._output = recipe.output
        self._consumers = Counter(input_id for node in recipe.nodes for input_id in node.depends_on)
        self.steps: list[Step] = []
        self.cache_ids: dict[str, str] = {}  # node id -> its (final) step's cache id
        self._levels: dict[str, int] = {}  # cache id -> level
        self._kinds: dict[str, Kind] = {}  # cache id -> media kind
        self._fusable: dict[str, Step] = {}  # cache id -> a step a CHAIN may take in

    def add(self, node: RecipeNode) -> None:
        if node.type == "SOURCE":
            self._add_source(node)
            return
        inputs = [self.cache_ids[i] for i in node.inputs]
        kind = output_kind(node, [self._kinds[input_id] for input_id in inputs])
        if node.analyses and kind == "image":
            raise RecipeError(
                "bindings and cuts from an analysis animate clips, but this node's input is a still image",
                node=node.id,
                field="inputs",
            )
        inputs += [self.cache_ids[i] for i in node.analyses]
        if node.type == "SEGMENT" and "at" in node.config:
            self.cache_ids[node.id] = self._expandable(node, inputs, kind)
        elif node.type == "SEQUENCE" and len(inputs) > 2:
            self.cache_ids[node.id] = self._sequence_tree(node, inputs, "", kind)
        else:
            self.cache_ids[node.id] = self._step(node.id, node, inputs, kind)

    def known(self, cache_id: str, kind: Kind) -> None:
        """A step planned elsewhere that nodes added here may read."""
        self._kinds[cache_id] = kind
        self._levels[cache_id] = 0

    def _add_source(self, node: RecipeNode) -> None:
        content_id = self._sources.get(node.id)
        if content_id is None:
            field = "config.input" if node.variable else "config"
            raise RecipeError(
                f"no content bound to this SOURCE ({dict(node.config)})", node=node.id, field=field
            )
        check_content_id(content_id)
        step = Step(content_id, node.id, "SOURCE", NODE_TYPES["SOURCE"].version, dict(node.config), (), {}, 0)
        self._append(step)
        self.cache_ids[node.id] = content_id
        self._kinds[content_id] = self._source_kind(node, content_id)

    def _source_kind(self, node: RecipeNode, content_id: str) -> Kind:
        media_type = self._media_types.get(content_id)
        if media_type is None:  # not told: an image, as before video existed
            return "image"
        kind = kind_of(media_type)
        if kind is None:
            raise RecipeError(
                f"input {content_id} is {media_type}: not an image, video or audio file",
                node=node.id,
                field="config.input" if node.variable else "config",
            )
        return kind

    def _sequence_tree(self, node: RecipeNode, inputs: list[str], path: str, kind: Kind) -> str:
        """Pairs from a balanced split: [a, b, c, d] -> SEQ(SEQ(a, b), SEQ(c, d))."""
        if len(inputs) == 1:
            return inputs[0]
        middle = (len(inputs) + 1) // 2
        left = self._sequence_tree(node, inputs[:middle], path + "0", kind)
        right = self._sequence_tree(node, inputs[middle:], path + "1", kind)
        step_id = node.id if not path else f"{node.id}#{path}"
        return self._step(step_id, node, [left, right], kind, final=not path)

    def _step(
        self, step_id: str, node: RecipeNode, inputs: list[str], kind: Kind, *, final: bool = True
    ) -> str:
        config = dict(node.config)
        if kind in ("video", "audio"):
            config["encode"] = "delivery" if final and node.id == self._output else "lossless"
        ops = [{"type": node.type, "type_version": NODE_TYPES[node.type].version, "config": config}]
        fused: tuple[str, ...] = ()
        previous = self._fusable.get(inputs[0]) if len(inputs) == 1 else None
        if previous is not None and _fusable(node, kind):
            ops = [*_ops_of(previous), *ops]
            fused, inputs = (*(previous.fused or (previous.node_id,)), step_id), list(previous.inputs)
            self._drop(previous)
        step = self._make_step(step_id, ops, inputs, kind, fused)
        added = self._append(step)
        self._kinds[step.cache_id] = kind
        if added and _fusable(node, kind) and self._consumers[node.id] == 1 and node.id != self._output:
            self._fusable[step.cache_id] = step
        return step.cache_id

    def _make_step(
        self, step_id: str, ops: list[dict[str, Any]], inputs: list[str], kind: Kind, fused: tuple[str, ...]
    ) -> Step:
        if len(ops) == 1:
            type_name, type_version, config = ops[0]["type"], ops[0]["type_version"], ops[0]["config"]
        else:
            encode = ops[-1]["config"]["encode"]
            chain = [{**op, "config": {k: v for k, v in op["config"].items() if k != "encode"}} for op in ops]
            type_name, type_version, config = CHAIN, CHAIN_VERSION, {"ops": chain, "encode": encode}
        return self._raw_step(
            step_id, type_name, type_version, config, inputs, _runtime_tools(kind, ops), fused
        )

    def _raw_step(  # noqa: PLR0917 - a step's fields
        self,
        step_id: str,
        type_name: str,
        type_version: str,
        config: Mapping[str, Any],
        inputs: list[str],
        tools: tuple[str, ...],
        fused: tuple[str, ...] = (),
    ) -> Step:
        runtime = {tool: self._tools.get(tool, "unknown") for tool in tools}
        cache_id = step_cache_id(type_name, type_version, config, inputs, runtime)
        level = 1 + max(self._levels[input_id] for input_id in inputs)
        return Step(cache_id, step_id, type_name, type_version, config, tuple(inputs), runtime, level, fused)

    def _expandable(self, node: RecipeNode, inputs: list[str], kind: Kind) -> str:
        """A SEGMENT cut at an analysis's events: an EXPAND step (which, once the analysis is
        done, plans the pieces and their join) and the node's own step, which is the join's
        output. Both cache ids are known now, so every step after them is planned as usual."""
        config = {"node": node.id, "at": node.config["at"], "kind": kind, "output": node.id == self._output}
        expand = self._raw_step(f"{node.id}#cuts", EXPAND, EXPAND_VERSION, config, inputs, MEDIA_RUNTIME)
        self._append(expand)
        cut_config = {**node.config, "expansion": expand.cache_id}
        step = self._raw_step(
            node.id, node.type, NODE_TYPES[node.type].version, cut_config, [expand.cache_id], ()
        )
        self._append(step)
        self._kinds[step.cache_id] = kind
        return step.cache_id

    def _drop(self, step: Step) -> None:
        """A step taken into a CHAIN is no longer computed on its own."""
        self.steps.remove(step)
        del self._levels[step.cache_id]
        del self._fusable[step.cache_id]

    def _append(self, step: Step) -> bool:
        """Add ``step`` unless the plan has it; whether it was added."""
        if step.cache_id in self._levels:  # the same work twice in one recipe is one step...
            self._fusable.pop(step.cache_id, None)  # ...whose output two nodes now use
            return False
        self._levels[step.cache_id] = step.level
        self.steps.append(step)
        return True


def _ops_of(step: Step) -> list[dict[str, Any]]:
    if step.type == CHAIN:
        return [dict(op) for op in step.config["ops"]]
    return [{"type": step.type, "type_version": step.type_version, "config": dict(step.config)}]


def _fusable(node: RecipeNode, kind: Kind) -> bool:
    if kind != "video" or node.type not in FUSABLE or node.analyses:
        return False
    return node.type != "EFFECT" or node.config["effect"] in FILTER_EFFECTS


def _runtime_tools(kind: Kind, ops: list[dict[str, Any]]) -> tuple[str, ...]:
    """Tools whose versions decide the step's bytes: ffmpeg for media (and numpy for effects
    that run on raw frames), numpy, Pillow and zlib for images."""
    if kind == "image":
        return IMAGE_RUNTIME
    if kind == "analysis":
        return ANALYSIS_RUNTIME
    raw_frames = any(op["type"] == "EFFECT" and on_raw_frames(op["config"]) for op in ops)
    return (*MEDIA_RUNTIME, "numpy") if raw_frames else MEDIA_RUNTIME


def on_raw_frames(config: Mapping[str, Any]) -> bool:
    """An EFFECT on video that runs on raw frames: one with no ffmpeg filter, or with a
    parameter bound to an analysis that its filter cannot take by command."""
    name = config["effect"]
    if name not in FILTER_EFFECTS | {"identity"}:
        return True
    params = bound(config["params"])
    return bool(params) and not commanded(name, params)


def output_kind(node: RecipeNode, kinds: list[Kind]) -> Kind:
    """The kind a node makes from its inputs' kinds; RecipeError if it cannot take them."""
    node_type = NODE_TYPES[node.type]
    for position, kind in enumerate(kinds):
        if kind not in node_type.kinds:
            takes = " and ".join(node_type.kinds)
            raise RecipeError(
                f"{node.type} takes {takes}, but input {node.inputs[position]} is {kind}",
                node=node.id,
                field="inputs",
            )
    if node.type == "AUDIO_MIX":
        return "audio"
    if node.type == "ANALYZE":
        return "analysis"
    if node.type == "SEGMENT" and len(set(kinds)) > 1:
        raise RecipeError("SEGMENT cuts between clips of one kind: all video or all audio", node=node.id,
                          field="inputs")  # fmt: skip
    if node.type == "SEQUENCE" and len(set(kinds)) > 1:
        raise RecipeError(
            "SEQUENCE joins clips of one kind: all video or all audio", node=node.id, field="inputs"
        )
    if node.type == "MUX":
        return _mux_kind(node, kinds)
    if "video" in kinds:
        return "video"
    return "audio" if "audio" in kinds else "image"


def _mux_kind(node: RecipeNode, kinds: list[Kind]) -> Kind:
    picture = kinds[node.config["video"]]
    if picture != "video":
        raise RecipeError(
            f"MUX takes its picture from input {node.config['video']}, which is {picture}",
            node=node.id,
            field="config.video",
        )
    return "video"


def plan_fragment(
    nodes: list[RecipeNode], known: Mapping[str, tuple[str, Kind]], output: str, tools: Mapping[str, str]
) -> list[Step]:
    """Steps for ``nodes`` (in topological order) over steps already planned: ``known`` maps
    the node ids they read to (cache id, kind). ``output`` names the node whose step makes the
    delivery encode, or is empty. An expansion's pieces are planned so (``node.executor.expansion``)."""
    recipe = Recipe(name="fragment", version="", description="", nodes=tuple(nodes), output=output)
    planner = _Planner(recipe, {}, tools, {})
    for node_id, (cache_id, kind) in known.items():
        planner.cache_ids[node_id] = cache_id
        planner.known(cache_id, kind)
    for node in nodes:
        planner.add(node)
    return planner.steps
