"""Recipes: the seeds' format parses; every kind of mistake is one RecipeError naming node and field."""

from __future__ import annotations

import pytest

from node.executor.errors import RecipeError
from node.executor.recipe import MAX_RECIPE_BYTES, builtin_recipe, parse_recipe
from node.pixels.effects import EFFECTS

SEEDS_EXAMPLE = """
name: my-effect
version: "1.0"
description: "Apply effect to user image"
registry:
  effects:
    dog:
      hash: "{dog_hash}"
dag:
  nodes:
    - id: user_image
      type: SOURCE
      config:
        input: true
        name: "input_image"
    - id: apply_dog
      type: EFFECT
      config:
        effect: dog
      inputs:
        - user_image
  output: apply_dog
"""


def recipe_text(nodes: str, output: str = "out", extra: str = "") -> str:
    return f"name: test\n{extra}dag:\n  nodes:\n{nodes}\n  output: {output}\n"


SRC = "    - {id: src, type: SOURCE, config: {input: true}}\n"


def blur(config: str) -> str:
    """A recipe whose node 'out' blurs 'src' with the given config fields."""
    return recipe_text(
        SRC + f"    - {{id: out, type: EFFECT, config: {{effect: blur, {config}}}, inputs: [src]}}"
    )


def test_seeds_example_parses() -> None:
    """The seeds' config example is a valid recipe with one variable input."""
    recipe = parse_recipe(SEEDS_EXAMPLE.replace("{dog_hash}", EFFECTS["dog"].hash))
    assert recipe.name == "my-effect" and recipe.version == "1.0"
    assert recipe.variables == ("input_image",)
    assert [node.id for node in recipe.nodes] == ["user_image", "apply_dog"]
    assert recipe.node("apply_dog").config == {
        "effect": "dog",
        "effect_version": "1",
        "params": {"sigma": 1.0, "k": 1.6, "gain": 10.0},
    }


def test_every_effect_is_a_builtin_recipe() -> None:
    """Each effect is also a one-step recipe under its own name, with one variable input."""
    for name in EFFECTS:
        recipe = builtin_recipe(name)
        assert recipe.output == name
        assert recipe.variables == ("input",)


def test_nodes_are_ordered_inputs_first() -> None:
    """Nodes listed out of order come back in a topological order."""
    recipe = parse_recipe(
        recipe_text(
            "    - {id: out, type: EFFECT, config: {effect: invert}, inputs: [mid]}\n"
            "    - {id: mid, type: EFFECT, config: {effect: blur, sigma: 3}, inputs: [src]}\n" + SRC
        )
    )
    assert [node.id for node in recipe.nodes] == ["src", "mid", "out"]
    assert recipe.node("mid").config["params"] == {"sigma": 3.0}


@pytest.mark.parametrize(
    ("text", "node", "field", "message"),
    [
        (recipe_text(SRC + "    - {id: out, type: WARP, inputs: [src]}"), "out", "type", "unknown type"),
        (recipe_text(SRC + "    - {id: out, type: EFFECT, config: {effect: melt}, inputs: [src]}"),
         "out", "config.effect", "unknown effect"),
        (recipe_text(SRC + "    - {id: out, type: EFFECT, config: {effect: invert}, inputs: [nope]}"),
         "out", "inputs", "unknown input id"),
        (recipe_text(SRC + "    - {id: a, type: EFFECT, config: {effect: invert}, inputs: [out]}\n"
                     "    - {id: out, type: EFFECT, config: {effect: invert}, inputs: [a]}"),
         "a", "inputs", "cycle"),
        (recipe_text(SRC + SRC + "    - {id: out, type: EFFECT, config: {effect: invert}, inputs: [src]}"),
         "src", "id", "duplicate"),
        (recipe_text(SRC + "    - {id: out, type: EFFECT, config: {effect: invert}, inputs: [src, src]}"),
         "out", "inputs", "takes 1 inputs, got 2"),
        (recipe_text(SRC + "    - {id: out, type: BLEND, inputs: [src]}"), "out", "inputs", "takes 2 inputs"),
        (blur("sigma: 500"), "out", "config.sigma", "from 0.1 to 50"),
        (blur("sigma: wide"), "out", "config.sigma", "must be a number"),
        (blur("radius: 2"), "out", "config.radius", "unknown parameter"),
        (recipe_text(SRC + "    - {id: out, type: BLEND, config: {mode: glow}, inputs: [src, src]}"),
         "out", "config.mode", "must be one of"),
        (recipe_text(SRC + "    - {id: out, type: RESIZE, config: {width: 1.5}, inputs: [src]}"),
         "out", "config.width", "whole number"),
        (recipe_text("    - {id: out, type: SOURCE, config: {}}"), "out", "config", "exactly one of"),
        (recipe_text("    - {id: out, type: SOURCE, config: {input: true, asset: cat}}"),
         "out", "config", "exactly one"),
        (recipe_text(SRC, output="missing"), None, "dag.output", "must name a node"),
        (recipe_text(SRC, output="src", extra="registry: {effects: {dog: {hash: abc}}}\n"),
         None, "registry.effects.dog.hash", "is not this node's dog"),
        (recipe_text(SRC, output="src", extra="registry: {effects: {melt: {hash: abc}}}\n"),
         None, "registry.effects.melt", "no effect"),
        ("name: t\ndag: {nodes: [], output: x}\n", None, "dag.nodes", "non-empty"),
        ("- just a list\n", None, "yaml", "mapping"),
        ("name: [unclosed\n", None, "yaml", "not valid YAML"),
    ],
)  # fmt: skip
def test_each_mistake_names_node_and_field(text: str, node: str | None, field: str, message: str) -> None:
    """Each validation error is a RecipeError (400 invalid_recipe) with node, field and reason."""
    with pytest.raises(RecipeError) as caught:
        parse_recipe(text)
    assert caught.value.node == node
    assert caught.value.field == field
    assert message in caught.value.message
    assert caught.value.details["field"] == field


def test_yaml_aliases_are_refused() -> None:
    """Anchors and aliases (the 'billion laughs' vector) are refused before anything expands."""
    bomb = 'name: t\na: &a ["x", "x"]\nb: &b [*a, *a]\nc: [*b, *b]\ndag: {nodes: [], output: x}\n'
    with pytest.raises(RecipeError, match="aliases are not allowed"):
        parse_recipe(bomb)


def test_oversized_recipe_is_refused() -> None:
    """A document over the size limit is refused without being parsed."""
    with pytest.raises(RecipeError, match="the limit is"):
        parse_recipe("name: t\n" + "#" * MAX_RECIPE_BYTES)


def test_unknown_builtin_is_refused() -> None:
    with pytest.raises(RecipeError, match="unknown recipe or effect"):
        builtin_recipe("melt")


DEEP = "name: t\nx: " + "[" * 20000 + "]" * 20000 + "\ndag: {nodes: [], output: x}\n"


@pytest.mark.parametrize(
    "text",
    [
        recipe_text(SRC + "    - {id: out, type: [EFFECT], inputs: [src]}"),
        recipe_text(SRC + "    - {id: out, type: {a: 1}, inputs: [src]}"),
        blur("sigma: " + "9" * 400),
        blur("sigma: " + "9" * 5000),
        recipe_text(SRC + "    - {id: out, type: EFFECT, config: {effect: blur, params: 5}, inputs: [src]}"),
        recipe_text(
            SRC + "    - {id: out, type: EFFECT, config: {effect: blur, params: [1]}, inputs: [src]}"
        ),
        recipe_text(SRC + "    - {id: out, type: EFFECT, config: {effect: blur, 1: a, b: c}, inputs: [src]}"),
        recipe_text(SRC + "    - {id: out, type: EFFECT, config: {effect: blur, ~: a}, inputs: [src]}"),
        recipe_text(
            SRC + "    - {id: out, type: EFFECT, config: {effect: blur, sigma: .nan}, inputs: [src]}"
        ),
        recipe_text("    - {id: 5, type: SOURCE, config: {input: true}}", output="5"),
        DEEP,
    ],
)
def test_malformed_shapes_are_recipe_errors(text: str) -> None:
    """Odd YAML types, absurd numbers and deep nesting are RecipeErrors (400), never crashes."""
    with pytest.raises(RecipeError):
        parse_recipe(text)
