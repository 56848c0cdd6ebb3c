"""Plans: a recipe bound to its inputs, as steps with deterministic cache ids.

A step's cache id is the SHA3-256 of the canonical JSON of
``{type, type_version, config, inputs, runtime}`` (DESIGN.md "Identifiers"):

- ``config`` is the normalized config (defaults filled in, numbers in one form; for EFFECT the
  effect's name, version and every parameter);
- ``inputs`` are the input steps' cache ids in DAG order (SEQUENCE(a, b) != SEQUENCE(b, a));
- ``runtime`` maps each tool whose version changes the output bytes to that version.

A SOURCE's cache id is its content id. Same recipe + same inputs + same runtime = same cache
ids = reuse. A SEQUENCE of more than two inputs becomes a balanced tree of pairwise steps, so
its halves are computed (and reused) independently. The plan id hashes the recipe's content id,
the step cache ids in order and the output's.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import numpy
from PIL import features

from node.canonical import canonical_id
from node.executor.errors import RecipeError
from node.executor.nodetypes import NODE_TYPES
from node.executor.recipe import Recipe, RecipeNode
from node.sync.keys import check_content_id


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

    def record(self) -> dict[str, Any]:
        """The step as stored in a plan record."""
        return {
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

    @property
    def levels(self) -> list[list[Step]]:
        """Steps grouped by level: each level's steps depend only on earlier levels."""
        grouped: dict[int, list[Step]] = {}
        for step in self.steps:
            grouped.setdefault(step.level, []).append(step)
        return [grouped[level] for level in sorted(grouped)]

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Plan:
        """The plan a stored record describes (inverse of :meth:`record`)."""
        steps = tuple(
            Step(
                cache_id=step["cache_id"],
                node_id=step["node_id"],
                type=step["type"],
                type_version=step["type_version"],
                config=step["config"],
                inputs=tuple(step["inputs"]),
                runtime=step["runtime"],
                level=step["level"],
            )
            for step in record["steps"]
        )
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
    )


def make_plan(
    recipe: Recipe,
    recipe_id: str,
    sources: Mapping[str, str],
    tools: Mapping[str, str] | None = None,
) -> Plan:
    """Bind ``sources`` (SOURCE node id -> content id) and compute every step's cache id."""
    tools = tool_versions() if tools is None else tools
    planner = _Planner(sources, tools)
    for node in recipe.nodes:
        planner.add(node)
    steps = tuple(planner.steps)
    output = planner.cache_ids[recipe.output]
    plan_id = canonical_id(
        {"recipe": recipe_id, "steps": [step.cache_id for step in steps], "output": output}
    )
    return Plan(plan_id, recipe_id, steps, output)


class _Planner:
    def __init__(self, sources: Mapping[str, str], tools: Mapping[str, str]) -> None:
        self._sources = sources
        self._tools = tools
        self.steps: list[Step] = []
        self.cache_ids: dict[str, str] = {}  # node id -> its (final) step's cache id
        self._levels: dict[str, int] = {}  # cache id -> level

    def add(self, node: RecipeNode) -> None:
        if node.type == "SOURCE":
            self._add_source(node)
        elif node.type == "SEQUENCE" and len(node.inputs) > 2:
            self.cache_ids[node.id] = self._sequence_tree(node, [self.cache_ids[i] for i in node.inputs], "")
        else:
            self.cache_ids[node.id] = self._step(node.id, node, [self.cache_ids[i] for i in node.inputs])

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

    def _sequence_tree(self, node: RecipeNode, inputs: list[str], path: str) -> str:
        """Pairs from a balanced split: [a, b, c, d] -> SEQ(SEQ(a, b), SEQ(c, d))."""
        if len(inputs) == 1:
            return inputs[0]
        middle = (len(inputs) + 1) // 2
        left = self._sequence_tree(node, inputs[:middle], path + "0")
        right = self._sequence_tree(node, inputs[middle:], path + "1")
        step_id = node.id if not path else f"{node.id}#{path}"
        return self._step(step_id, node, [left, right])

    def _step(self, step_id: str, node: RecipeNode, inputs: list[str]) -> str:
        node_type = NODE_TYPES[node.type]
        runtime = {tool: self._tools.get(tool, "unknown") for tool in node_type.runtime}
        config = dict(node.config)
        cache_id = canonical_id(
            {
                "type": node.type,
                "type_version": node_type.version,
                "config": config,
                "inputs": inputs,
                "runtime": runtime,
            }
        )
        level = 1 + max(self._levels[input_id] for input_id in inputs)
        self._append(
            Step(cache_id, step_id, node.type, node_type.version, config, tuple(inputs), runtime, level)
        )
        return cache_id

    def _append(self, step: Step) -> None:
        if step.cache_id not in self._levels:  # the same work twice in one recipe is one step
            self._levels[step.cache_id] = step.level
            self.steps.append(step)
