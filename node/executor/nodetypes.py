"""DAG node types: inputs they take, their config fields (units, defaults) and what they make.

A node's config is normalized here: unknown fields refused, defaults filled in, numbers in one
form, so that two spellings of the same recipe give the same cache ids. ``version`` is part of
every cache id: raise it when a type's output for the same config and inputs may change.
Video and audio behaviour of SEQUENCE (and the other ffmpeg types) comes with the video work.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from node.executor.effects import EFFECTS
from node.executor.errors import RecipeError
from node.executor.params import Param, normalize_params

BLEND_MODES = (
    "multiply",
    "screen",
    "overlay",
    "add",
    "subtract",
    "average",
    "difference",
    "lighten",
    "darken",
)
IMAGE_RUNTIME = ("numpy", "pillow", "zlib")


@dataclass(frozen=True)
class NodeType:
    """What a node of this type takes and makes."""

    name: str
    version: str
    min_inputs: int
    max_inputs: int | None
    params: tuple[Param, ...]
    description: str
    runtime: tuple[str, ...] = IMAGE_RUNTIME  # tools whose versions change the output bytes

    def check_inputs(self, node_id: str, count: int) -> None:
        if count < self.min_inputs or (self.max_inputs is not None and count > self.max_inputs):
            wanted = (
                str(self.min_inputs) if self.min_inputs == self.max_inputs else f"at least {self.min_inputs}"
            )
            if self.max_inputs is not None and self.min_inputs != self.max_inputs:
                wanted = f"{self.min_inputs} to {self.max_inputs}"
            raise RecipeError(f"{self.name} takes {wanted} inputs, got {count}", node=node_id, field="inputs")

    def normalize(self, node_id: str, config: Mapping[str, Any]) -> dict[str, Any]:
        """The canonical config of a node of this type; RecipeError naming the first bad field."""
        values, problems = normalize_params(self.params, config)
        if problems:
            field, problem = next(iter(sorted(problems.items())))
            raise RecipeError(problem, node=node_id, field=f"config.{field}")
        if self.name == "RESIZE" and not (values["width"] or values["height"]):
            raise RecipeError("RESIZE needs a width or a height above 0", node=node_id, field="config.width")
        return values


def _px(name: str, default: int, description: str, low: int = 0) -> Param:
    return Param(name, "int", default, description, low, 16384, unit="px")


def _opacity() -> Param:
    return Param("opacity", "float", 1.0, "weight of the upper input", 0.0, 1.0)


NODE_TYPES: dict[str, NodeType] = {
    node_type.name: node_type
    for node_type in (
        NodeType("SOURCE", "1", 0, 0, (), "Content by variable input, registry asset or CID.", ()),
        NodeType("EFFECT", "1", 1, 1, (), "A registered effect (config.effect) with its parameters."),
        NodeType(
            "RESIZE",
            "1",
            1,
            1,
            (
                _px("width", 0, "target width; 0 keeps the aspect ratio from height"),
                _px("height", 0, "target height; 0 keeps the aspect ratio from width"),
                Param(
                    "fit",
                    "choice",
                    "contain",
                    "with both sizes: stretch, fit inside, or cover and crop",
                    choices=("stretch", "contain", "cover"),
                ),
                Param(
                    "filter",
                    "choice",
                    "lanczos",
                    "resampling filter",
                    choices=("lanczos", "bilinear", "nearest"),
                ),
            ),
            "Scale an image.",
        ),
        NodeType(
            "LAYER",
            "1",
            2,
            2,
            (
                _px("x", 0, "left edge of the upper input on the lower", -16384),
                _px("y", 0, "top edge of the upper input on the lower", -16384),
                Param("scale", "float", 1.0, "scale of the upper input", 0.01, 100.0),
                _opacity(),
            ),
            "Place the second input over the first.",
        ),
        NodeType(
            "BLEND",
            "1",
            2,
            2,
            (Param("mode", "choice", "average", "blend mode", choices=BLEND_MODES), _opacity()),
            "Blend the second input into the first (resized to the first's size).",
        ),
        NodeType(
            "SEQUENCE",
            "1",
            2,
            None,
            (Param("crossfade", "float", 0.0, "overlap between clips", 0.0, 60.0, unit="s"),),
            "Clips one after another, in input order; planned as a balanced tree of pairs.",
            ("ffmpeg",),
        ),
    )
}


def normalize_effect_config(node_id: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """EFFECT config: ``effect`` plus its parameters, flat (as in the seeds) or under ``params``."""
    name = config.get("effect")
    if not isinstance(name, str) or name not in EFFECTS:
        raise RecipeError(
            f"unknown effect {name!r}; known: {', '.join(sorted(EFFECTS))}",
            node=node_id,
            field="config.effect",
        )
    effect = EFFECTS[name]
    given = (
        dict(config.get("params") or {})
        if "params" in config
        else {k: v for k, v in config.items() if k != "effect"}
    )
    if "params" in config and set(config) - {"effect", "params"}:
        extra = sorted(set(config) - {"effect", "params"})[0]
        raise RecipeError(
            "give parameters flat or under params, not both", node=node_id, field=f"config.{extra}"
        )
    values, problems = normalize_params(effect.params, given)
    if problems:
        field, problem = next(iter(sorted(problems.items())))
        raise RecipeError(problem, node=node_id, field=f"config.{field}")
    return {"effect": name, "effect_version": effect.version, "params": values}
