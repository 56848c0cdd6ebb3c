"""Plans and cache ids: deterministic across processes, sensitive to everything that matters."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest

from node.executor.errors import RecipeError
from node.executor.planner import Plan, make_plan
from node.executor.recipe import builtin_recipe, parse_recipe
from node.pixels import effects

A, B, C, D = ("a" * 64, "b" * 64, "c" * 64, "d" * 64)
TOOLS = {"numpy": "2.0.0", "pillow": "11.0.0", "ffmpeg": "5.1"}

TWO_SOURCES = """
name: two
dag:
  nodes:
    - {{id: first, type: SOURCE, config: {{input: true}}}}
    - {{id: second, type: SOURCE, config: {{input: true}}}}
    - {{id: out, type: {type}, config: {config}, inputs: {inputs}}}
  output: out
"""


def two(type_: str = "BLEND", config: str = "{}", inputs: str = "[first, second]") -> Plan:
    recipe = parse_recipe(TWO_SOURCES.format(type=type_, config=config, inputs=inputs))
    return make_plan(recipe, "recipe-id", {"first": A, "second": B}, TOOLS)


def dog_plan(config: str) -> Plan:
    text = (
        "name: d\ndag:\n  nodes:\n    - {id: src, type: SOURCE, config: {input: true}}\n"
        f"    - {{id: out, type: EFFECT, config: {config}, inputs: [src]}}\n  output: out\n"
    )
    return make_plan(parse_recipe(text), "recipe-id", {"src": A}, TOOLS)


def test_source_cache_id_is_its_content_id() -> None:
    plan = make_plan(builtin_recipe("invert"), "r", {"input": C}, TOOLS)
    assert plan.steps[0].cache_id == C
    assert plan.steps[0].level == 0
    assert plan.output == plan.steps[1].cache_id != C


def test_cache_ids_are_the_same_in_a_fresh_process() -> None:
    """A plan made in another interpreter gives byte-identical ids (no hash seeds, no dict order)."""
    here = make_plan(builtin_recipe("dog"), "recipe-id", {"input": A})
    script = (
        "import json; from node.executor.planner import make_plan; "
        "from node.executor.recipe import builtin_recipe; "
        f"plan = make_plan(builtin_recipe('dog'), 'recipe-id', {{'input': {A!r}}}); "
        "print(json.dumps([plan.plan_id, [s.cache_id for s in plan.steps]]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123"},
    )
    assert json.loads(result.stdout) == [here.plan_id, [step.cache_id for step in here.steps]]


def test_input_order_matters() -> None:
    """BLEND(a, b) and BLEND(b, a) are different work: inputs keep DAG order (the old engine sorted)."""
    assert two(inputs="[first, second]").output != two(inputs="[second, first]").output


def test_config_matters_but_not_its_spelling() -> None:
    """Another parameter value changes the id; 2 vs 2.0, defaults spelled out or not, flat or
    nested parameters do not."""
    base = dog_plan("{effect: dog}").output
    assert dog_plan("{effect: dog, sigma: 2}").output != base
    assert dog_plan("{effect: dog, sigma: 1}").output == base
    assert dog_plan("{effect: dog, sigma: 1.0, k: 1.6, gain: 10}").output == base
    assert dog_plan("{effect: dog, params: {sigma: 1.0}}").output == base


def test_effect_version_matters(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new version of an effect gives new cache ids for every step that uses it."""
    before = dog_plan("{effect: dog}").output
    monkeypatch.setitem(effects.EFFECTS, "dog", replace(effects.EFFECTS["dog"], version="2"))
    assert dog_plan("{effect: dog}").output != before


def test_runtime_matters() -> None:
    """Another numpy or Pillow version gives other cache ids: bytes may differ."""
    recipe = builtin_recipe("blur")
    base = make_plan(recipe, "r", {"input": A}, TOOLS).output
    assert make_plan(recipe, "r", {"input": A}, {**TOOLS, "numpy": "2.0.1"}).output != base
    assert make_plan(recipe, "r", {"input": A}, {**TOOLS, "pillow": "11.0.1"}).output != base
    assert make_plan(recipe, "r", {"input": A}, {**TOOLS, "ffmpeg": "6.0"}).output == base  # not used


def test_sequence_of_four_is_a_balanced_tree() -> None:
    """SEQUENCE(a, b, c, d) plans as SEQ(SEQ(a, b), SEQ(c, d)), and reversed inputs differ."""
    text = "name: s\ndag:\n  nodes:\n" + "".join(
        f"    - {{id: {name}, type: SOURCE, config: {{input: true}}}}\n" for name in "abcd"
    )
    forward = parse_recipe(text + "    - {id: out, type: SEQUENCE, inputs: [a, b, c, d]}\n  output: out\n")
    backward = parse_recipe(text + "    - {id: out, type: SEQUENCE, inputs: [d, c, b, a]}\n  output: out\n")
    sources = {"a": A, "b": B, "c": C, "d": D}
    clips = dict.fromkeys(sources.values(), "video/mp4")
    plan = make_plan(forward, "r", sources, TOOLS, clips)
    sequences = [step for step in plan.steps if step.type == "SEQUENCE"]
    left, right, top = sequences
    assert (left.inputs, right.inputs) == ((A, B), (C, D))
    assert top.inputs == (left.cache_id, right.cache_id)
    assert (left.level, right.level, top.level) == (1, 1, 2)
    assert top.node_id == "out" and plan.output == top.cache_id
    assert make_plan(backward, "r", sources, TOOLS, clips).output != plan.output


def test_plan_id_names_recipe_and_steps() -> None:
    recipe = builtin_recipe("invert")
    plan = make_plan(recipe, "recipe-1", {"input": A}, TOOLS)
    assert make_plan(recipe, "recipe-1", {"input": A}, TOOLS).plan_id == plan.plan_id
    assert make_plan(recipe, "recipe-2", {"input": A}, TOOLS).plan_id != plan.plan_id
    assert make_plan(recipe, "recipe-1", {"input": B}, TOOLS).plan_id != plan.plan_id


def test_missing_variable_input_is_refused() -> None:
    with pytest.raises(RecipeError) as caught:
        make_plan(builtin_recipe("invert"), "r", {}, TOOLS)
    assert caught.value.node == "input"
    assert caught.value.field == "config.input"


def test_same_work_twice_is_one_step() -> None:
    """Two nodes doing identical work on identical inputs share one step."""
    text = (
        "name: t\ndag:\n  nodes:\n    - {id: src, type: SOURCE, config: {input: true}}\n"
        "    - {id: x, type: EFFECT, config: {effect: invert}, inputs: [src]}\n"
        "    - {id: y, type: EFFECT, config: {effect: invert}, inputs: [src]}\n"
        "    - {id: out, type: BLEND, inputs: [x, y]}\n  output: out\n"
    )
    plan = make_plan(parse_recipe(text), "r", {"src": A}, TOOLS)
    assert [step.node_id for step in plan.steps] == ["src", "x", "out"]
    out = plan.steps[-1]
    assert out.inputs[0] == out.inputs[1]


def test_negative_zero_is_zero() -> None:
    """-0.0 and 0.0 are the same parameter value, so the same cache id."""
    assert (
        dog_plan("{effect: sharpen, amount: -0.0}").output == dog_plan("{effect: sharpen, amount: 0}").output
    )
