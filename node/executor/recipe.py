"""Recipes: the seeds' YAML format, parsed safely and validated into a DAG.

```yaml
name: my-effect
version: "1.0"
description: Apply effect to user image
registry:
  assets: {cat: {hash: <sha3-256 hex>}}        # or {cid: <CID>}
  effects: {dog: {hash: <effect hash>}}          # must equal this node's effect hash
dag:
  nodes:
    - {id: user_image, type: SOURCE, config: {input: true, name: input_image}}
    - {id: apply_dog, type: EFFECT, config: {effect: dog, sigma: 1.5}, inputs: [user_image]}
  output: apply_dog
```

Every problem is a :class:`RecipeError` naming the node and field. YAML aliases are refused
outright (no "billion laughs"), and so is any document over ``MAX_RECIPE_BYTES``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from node.executor.bindings import check_references
from node.executor.errors import RecipeError
from node.executor.nodetypes import NODE_TYPES, normalize_effect_config
from node.pixels.effects import EFFECTS

MAX_RECIPE_BYTES = 256 * 1024
MAX_NODES = 1000
MAX_INPUTS = 1000
NODE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
SHAPES = {NODE_ID.pattern: "1-64 letters, digits, _ . or -, starting with a letter or digit"}
SOURCE_KINDS = ("input", "asset", "cid")


@dataclass(frozen=True)
class RecipeNode:
    """One validated node: id, type, normalized config and input ids in DAG order."""

    id: str
    type: str
    config: Mapping[str, Any]
    inputs: tuple[str, ...] = ()

    @property
    def analyses(self) -> tuple[str, ...]:
        """The ANALYZE nodes its bindings or cuts read: extra inputs, after ``inputs``."""
        return tuple(self.config.get("analyses", ()))

    @property
    def depends_on(self) -> tuple[str, ...]:
        return (*self.inputs, *self.analyses)

    @property
    def variable(self) -> str | None:
        """The variable input's name, for a SOURCE with ``input: true``."""
        return str(self.config["name"]) if self.type == "SOURCE" and self.config.get("input") else None


@dataclass(frozen=True)
class Recipe:
    """A validated recipe; ``nodes`` are in a topological order (inputs first)."""

    name: str
    version: str
    description: str
    nodes: tuple[RecipeNode, ...]
    output: str
    assets: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    effects: Mapping[str, str] = field(default_factory=dict)

    def node(self, node_id: str) -> RecipeNode:
        return next(node for node in self.nodes if node.id == node_id)

    @property
    def variables(self) -> tuple[str, ...]:
        """Names of the variable inputs, in the order a list of run inputs fills them."""
        return tuple(node.variable for node in self.nodes if node.variable is not None)


class _NoAliasLoader(yaml.SafeLoader):
    """safe_load without anchors and aliases: a recipe has no use for them, an attacker has."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise RecipeError(
                f"YAML aliases are not allowed (line {event.start_mark.line + 1})", field="yaml"
            )
        return super().compose_node(parent, index)


def parse_recipe(text: str | bytes) -> Recipe:
    """Parse and validate recipe YAML."""
    raw = text.encode() if isinstance(text, str) else text
    if len(raw) > MAX_RECIPE_BYTES:
        raise RecipeError(f"recipe is {len(raw)} bytes; the limit is {MAX_RECIPE_BYTES}", field="yaml")
    try:
        document = yaml.load(raw, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except (yaml.YAMLError, ValueError, RecursionError) as exc:  # PyYAML's int() of 5000 digits
        raise RecipeError(f"not valid YAML: {exc}", field="yaml") from exc
    if not isinstance(document, dict):
        raise RecipeError("a recipe is a mapping with name, dag and optionally registry", field="yaml")
    return recipe_from_document(document)


def recipe_from_document(document: Mapping[str, Any]) -> Recipe:
    """Validate an already-parsed recipe document (YAML or JSON)."""
    try:
        return _validated(document)
    except RecipeError:
        raise
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:  # shapes we did not foresee
        raise RecipeError(f"malformed recipe: {type(exc).__name__}: {exc}", field="yaml") from exc


def _validated(document: Mapping[str, Any]) -> Recipe:
    name = _string(document.get("name"), "name", NODE_ID)
    registry = _mapping(document.get("registry", {}), "registry")
    effects = _registry_effects(_mapping(registry.get("effects", {}), "registry.effects"))
    assets = _registry_assets(_mapping(registry.get("assets", {}), "registry.assets"))
    dag = _mapping(document.get("dag"), "dag")
    raw_nodes = dag.get("nodes")
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise RecipeError("must be a non-empty list of nodes", field="dag.nodes")
    if len(raw_nodes) > MAX_NODES:
        raise RecipeError(f"at most {MAX_NODES} nodes", field="dag.nodes")
    nodes = [_node(raw, index, assets) for index, raw in enumerate(raw_nodes)]
    output = dag.get("output")
    analyzers = {node.id: node.config for node in nodes if node.type == "ANALYZE"}
    for node in nodes:
        check_references(node.id, node.config, analyzers)
    ordered = _topological(nodes)
    if not isinstance(output, str) or output not in {node.id for node in nodes}:
        raise RecipeError(f"must name a node of the dag, got {output!r}", field="dag.output")
    _check_registry_effects(effects)
    return Recipe(
        name=name,
        version=str(document.get("version", "")),
        description=str(document.get("description", "")),
        nodes=tuple(ordered),
        output=output,
        assets=assets,
        effects=effects,
    )


def builtin_recipe(effect_name: str) -> Recipe:
    """The one-step recipe every effect is under its own name: input -> effect -> output."""
    return recipe_from_document(builtin_document(effect_name))


def builtin_document(effect_name: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The recipe document of a built-in one-step recipe; ``params`` (checked when the document
    is validated) set the effect's parameters, the others keep their defaults."""
    if effect_name not in EFFECTS:
        raise RecipeError(f"unknown recipe or effect {effect_name!r}", field="recipe")
    config: dict[str, Any] = {"effect": effect_name}
    if params:  # without any, the document (and its CID) is the one it always was
        config["params"] = dict(params)
    return {
        "name": effect_name,
        "version": EFFECTS[effect_name].version,
        "description": EFFECTS[effect_name].description,
        "dag": {
            "nodes": [
                {"id": "input", "type": "SOURCE", "config": {"input": True, "name": "input"}},
                {
                    "id": effect_name,
                    "type": "EFFECT",
                    "config": config,
                    "inputs": ["input"],
                },
            ],
            "output": effect_name,
        },
    }


def _string(
    value: Any, field_name: str, pattern: re.Pattern[str] | None = None, node: str | None = None
) -> str:
    if value is None:
        raise RecipeError("is missing", node=node, field=field_name)
    if not isinstance(value, str) or (pattern is not None and not pattern.fullmatch(value)):
        shape = f" of {SHAPES.get(pattern.pattern, 'the allowed characters')}" if pattern is not None else ""
        raise RecipeError(f"must be a string{shape}, got {value!r}", node=node, field=field_name)
    return value


def _mapping(value: Any, field_name: str, node: str | None = None) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise RecipeError(f"must be a mapping, got {type(value).__name__}", node=node, field=field_name)
    if not all(isinstance(key, str) for key in value):
        bad = next(key for key in value if not isinstance(key, str))
        raise RecipeError(f"keys must be strings, got {bad!r}", node=node, field=field_name)
    return value


def _registry_effects(raw: Mapping[str, Any]) -> dict[str, str]:
    effects = {}
    for name, entry in raw.items():
        where = f"registry.effects.{name}"
        effects[str(name)] = _string(_mapping(entry, where).get("hash"), f"{where}.hash")
    return effects


def _registry_assets(raw: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    assets = {}
    for name, entry in raw.items():
        where = f"registry.assets.{name}"
        refs = {key: str(value) for key, value in _mapping(entry, where).items() if key in ("hash", "cid")}
        if not refs:
            raise RecipeError("needs hash (SHA3-256 content id) or cid", field=where)
        assets[str(name)] = refs
    return assets


def _node(raw: Any, index: int, assets: Mapping[str, Any]) -> RecipeNode:
    entry = _mapping(raw, f"dag.nodes[{index}]")
    node_id = _string(entry.get("id"), f"dag.nodes[{index}].id", NODE_ID)
    type_name = entry.get("type")
    if not isinstance(type_name, str) or type_name not in NODE_TYPES:
        raise RecipeError(
            f"unknown type {type_name!r}; known: {', '.join(NODE_TYPES)}", node=node_id, field="type"
        )
    inputs = entry.get("inputs", [])
    if not isinstance(inputs, list) or not all(isinstance(item, str) for item in inputs):
        raise RecipeError("must be a list of node ids", node=node_id, field="inputs")
    if len(inputs) > MAX_INPUTS:
        raise RecipeError(f"at most {MAX_INPUTS} inputs", node=node_id, field="inputs")
    node_type = NODE_TYPES[type_name]
    node_type.check_inputs(node_id, len(inputs))
    config = _mapping(entry.get("config", {}) or {}, "config", node_id)
    if type_name == "SOURCE":
        normalized = _source_config(node_id, config, assets)
    elif type_name == "EFFECT":
        normalized = normalize_effect_config(node_id, config)
    else:
        normalized = node_type.normalize(node_id, config, len(inputs))
    return RecipeNode(node_id, type_name, normalized, tuple(inputs))


def _source_config(node_id: str, config: Mapping[str, Any], assets: Mapping[str, Any]) -> dict[str, Any]:
    kinds = [kind for kind in SOURCE_KINDS if config.get(kind) not in (None, False)]
    if len(kinds) != 1:
        raise RecipeError(
            "a SOURCE needs exactly one of input: true, asset: NAME or cid: CID", node=node_id, field="config"
        )
    unknown = sorted(set(config) - {*SOURCE_KINDS, "name"})
    if unknown:
        raise RecipeError("unknown field", node=node_id, field=f"config.{unknown[0]}")
    if kinds == ["input"]:
        if config["input"] is not True:
            raise RecipeError("must be true", node=node_id, field="config.input")
        return {"input": True, "name": _string(config.get("name", node_id), "config.name", NODE_ID, node_id)}
    if kinds == ["asset"]:
        return {"asset": _string(config["asset"], "config.asset", NODE_ID, node_id)}
    return {"cid": _string(config["cid"], "config.cid", node=node_id)}


def _topological(nodes: list[RecipeNode]) -> list[RecipeNode]:
    """Kahn's algorithm in O(nodes + edges); ready nodes are taken in recipe order, so the
    order is deterministic."""
    by_id, users = _edges(nodes)
    waiting = {node.id: len(set(node.depends_on)) for node in nodes}
    position = {node.id: index for index, node in enumerate(nodes)}
    ready = [node.id for node in nodes if waiting[node.id] == 0]
    ordered: list[RecipeNode] = []
    while ready:
        ready.sort(key=position.__getitem__)
        current, ready = ready, []
        for node_id in current:
            ordered.append(by_id[node_id])
            for user in users[node_id]:
                waiting[user] -= 1
                if waiting[user] == 0:
                    ready.append(user)
    if len(ordered) < len(nodes):
        stuck = next(node for node in nodes if waiting[node.id] > 0)
        raise RecipeError("the dag has a cycle through this node", node=stuck.id, field="inputs")
    return ordered


def _edges(nodes: list[RecipeNode]) -> tuple[dict[str, RecipeNode], dict[str, list[str]]]:
    """Nodes by id and, for each node, the nodes using it; refuses duplicates and dangling ids."""
    by_id: dict[str, RecipeNode] = {}
    for node in nodes:
        if node.id in by_id:
            raise RecipeError("duplicate node id", node=node.id, field="id")
        by_id[node.id] = node
    users: dict[str, list[str]] = {node.id: [] for node in nodes}
    for node in nodes:
        for input_id in dict.fromkeys(node.depends_on):
            if input_id not in by_id:
                raise RecipeError(f"unknown input id {input_id!r}", node=node.id, field="inputs")
            users[input_id].append(node.id)
    return by_id, users


def _check_registry_effects(pinned: Mapping[str, str]) -> None:
    """Effects a recipe pins must be the very ones this node runs (name, version, hash)."""
    for name, wanted in pinned.items():
        if name not in EFFECTS:
            raise RecipeError(f"this node has no effect {name!r}", field=f"registry.effects.{name}")
        if wanted != EFFECTS[name].hash:
            raise RecipeError(
                f"hash {wanted} is not this node's {name} {EFFECTS[name].version} ({EFFECTS[name].hash})",
                field=f"registry.effects.{name}.hash",
            )
