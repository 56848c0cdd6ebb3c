"""Plans of video and audio recipes: kinds checked before anything runs, ffmpeg in the runtime,
the delivery encode only for the output, and single-input video chains fused into one pass."""

from __future__ import annotations

import pytest

from node.executor.errors import RecipeError
from node.executor.planner import CHAIN, make_plan
from node.executor.recipe import builtin_recipe, parse_recipe
from node.store.sniffing import sniff_media_type

VIDEO, AUDIO, IMAGE = "e" * 64, "a" * 64, "1" * 64
TYPES = {VIDEO: "video/mp4", AUDIO: "audio/wave", IMAGE: "image/png"}
TOOLS = {"numpy": "2.0.0", "pillow": "11.0.0", "zlib": "1.3", "ffmpeg": "5.1.9"}


def recipe(nodes: str, output: str = "out", sources: str = "src") -> str:
    head = "".join(
        f"    - {{id: {name}, type: SOURCE, config: {{input: true}}}}\n" for name in sources.split()
    )
    return f"name: t\ndag:\n  nodes:\n{head}{nodes}  output: {output}\n"


def plan_of(text: str, **sources: str):  # type: ignore[no-untyped-def]
    return make_plan(parse_recipe(text), "r", sources, TOOLS, TYPES)


DOG_SEPIA = recipe(
    "    - {id: dog, type: EFFECT, config: {effect: dog}, inputs: [src]}\n"
    "    - {id: out, type: EFFECT, config: {effect: sepia}, inputs: [dog]}\n"
)


def test_video_chain_is_fused_into_one_delivery_step() -> None:
    plan = plan_of(DOG_SEPIA, src=VIDEO)
    (step,) = [step for step in plan.steps if step.type != "SOURCE"]
    assert step.type == CHAIN and step.fused == ("dog", "out") and step.node_id == "out"
    assert [op["config"]["effect"] for op in step.config["ops"]] == ["dog", "sepia"]
    assert step.config["encode"] == "delivery" and step.inputs == (VIDEO,)
    assert step.runtime == {"ffmpeg": "5.1.9"}
    assert plan.output == step.cache_id


def test_image_chain_is_not_fused_and_has_image_runtime() -> None:
    plan = plan_of(DOG_SEPIA, src=IMAGE)
    steps = [step for step in plan.steps if step.type != "SOURCE"]
    assert [step.type for step in steps] == ["EFFECT", "EFFECT"]
    assert all("encode" not in step.config for step in steps)
    assert steps[0].runtime == {"numpy": "2.0.0", "pillow": "11.0.0", "zlib": "1.3"}


def test_an_intermediate_used_twice_is_kept_and_lossless() -> None:
    text = recipe(
        "    - {id: dog, type: EFFECT, config: {effect: dog}, inputs: [src]}\n"
        "    - {id: a, type: EFFECT, config: {effect: sepia}, inputs: [dog]}\n"
        "    - {id: b, type: EFFECT, config: {effect: invert}, inputs: [dog]}\n"
        "    - {id: out, type: BLEND, config: {mode: average}, inputs: [a, b]}\n"
    )
    steps = {step.node_id: step for step in plan_of(text, src=VIDEO).steps}
    assert steps["dog"].type == "EFFECT" and steps["dog"].config["encode"] == "lossless"
    assert steps["a"].type == "EFFECT" and steps["out"].config["encode"] == "delivery"


def test_raw_frame_effects_are_not_fused_and_need_numpy() -> None:
    text = recipe(
        "    - {id: c, type: EFFECT, config: {effect: contrast}, inputs: [src]}\n"
        "    - {id: out, type: EFFECT, config: {effect: sepia}, inputs: [c]}\n"
    )
    steps = {step.node_id: step for step in plan_of(text, src=VIDEO).steps}
    assert steps["c"].type == "EFFECT" and steps["out"].type == "EFFECT"
    assert steps["c"].runtime == {"ffmpeg": "5.1.9", "numpy": "2.0.0"}


def test_ffmpeg_version_changes_video_cache_ids_only() -> None:
    video = parse_recipe(DOG_SEPIA)
    base = make_plan(video, "r", {"src": VIDEO}, TOOLS, TYPES).output
    assert make_plan(video, "r", {"src": VIDEO}, {**TOOLS, "ffmpeg": "6.0"}, TYPES).output != base
    image = make_plan(video, "r", {"src": IMAGE}, TOOLS, TYPES).output
    assert make_plan(video, "r", {"src": IMAGE}, {**TOOLS, "ffmpeg": "6.0"}, TYPES).output == image


def test_delivery_and_lossless_are_different_work() -> None:
    """The same node as a plan's output (delivery) and as an intermediate has two cache ids."""
    alone = plan_of(
        recipe("    - {id: out, type: EFFECT, config: {effect: dog}, inputs: [src]}\n"), src=VIDEO
    )
    inner = plan_of(
        recipe(
            "    - {id: dog, type: EFFECT, config: {effect: dog}, inputs: [src]}\n"
            "    - {id: out, type: SEQUENCE, inputs: [dog, src]}\n"
        ),
        src=VIDEO,
    )
    assert alone.output not in {step.cache_id for step in inner.steps}


def test_segment_spellings_are_one_cache_id() -> None:
    offset = recipe("    - {id: out, type: SEGMENT, config: {offset: 1, duration: 2.5}, inputs: [src]}\n")
    bounds = recipe("    - {id: out, type: SEGMENT, config: {start: 1.0, end: 3.5}, inputs: [src]}\n")
    assert plan_of(offset, src=VIDEO).output == plan_of(bounds, src=VIDEO).output


@pytest.mark.parametrize(
    ("nodes", "sources", "field", "message"),
    [
        (
            "{id: out, type: EFFECT, config: {effect: dog}, inputs: [src]}",
            {"src": AUDIO},
            "inputs",
            "is audio",
        ),
        ("{id: out, type: SEGMENT, config: {start: 1}, inputs: [src]}", {"src": IMAGE}, "inputs", "is image"),
        ("{id: out, type: MUX, inputs: [src, two]}", {"src": AUDIO, "two": VIDEO}, "config.video", "picture"),
        ("{id: out, type: SEQUENCE, inputs: [src, two]}", {"src": AUDIO, "two": VIDEO}, "inputs", "one kind"),
        (
            "{id: out, type: AUDIO_MIX, inputs: [src, two]}",
            {"src": IMAGE, "two": AUDIO},
            "inputs",
            "is image",
        ),
    ],
)
def test_kinds_a_type_cannot_take_are_refused_before_running(
    nodes: str, sources: dict[str, str], field: str, message: str
) -> None:
    text = recipe(f"    - {nodes}\n", sources=" ".join(sources))
    with pytest.raises(RecipeError, match=message) as caught:
        plan_of(text, **sources)
    assert (caught.value.node, caught.value.field) == ("out", field)


@pytest.mark.parametrize(
    ("node", "field"),
    [
        ("{id: out, type: SEGMENT, config: {offset: 1, end: 3}, inputs: [src]}", "config.start"),
        ("{id: out, type: SEGMENT, config: {start: 3, end: 2}, inputs: [src]}", "config.end"),
        ("{id: out, type: SEGMENT, config: {duration: -1}, inputs: [src]}", "config.duration"),
        ("{id: out, type: AUDIO_MIX, config: {gains: [1, 2, 3]}, inputs: [src, src]}", "config.gains"),
        ("{id: out, type: AUDIO_MIX, config: {gains: [100, 0]}, inputs: [src, src]}", "config.gains"),
        ("{id: out, type: MUX, config: {audio: 2}, inputs: [src, src]}", "config.audio"),
        ("{id: out, type: TRANSFORM, config: {speed: 10}, inputs: [src]}", "config.speed"),
    ],
)
def test_bad_media_configs_name_their_field(node: str, field: str) -> None:
    with pytest.raises(RecipeError) as caught:
        parse_recipe(recipe(f"    - {node}\n"))
    assert (caught.value.node, caught.value.field) == ("out", field)


def test_builtin_effect_on_video_is_one_delivery_step() -> None:
    plan = make_plan(builtin_recipe("dog"), "r", {"input": VIDEO}, TOOLS, TYPES)
    (step,) = [step for step in plan.steps if step.type != "SOURCE"]
    assert step.type == "EFFECT" and step.config["encode"] == "delivery"


def test_identical_fusable_nodes_are_one_step_used_twice() -> None:
    """Two identical nodes are one step; as two nodes use it, it is kept, not fused away."""
    text = recipe(
        "    - {id: a1, type: EFFECT, config: {effect: invert}, inputs: [src]}\n"
        "    - {id: a2, type: EFFECT, config: {effect: invert}, inputs: [src]}\n"
        "    - {id: b1, type: EFFECT, config: {effect: sepia}, inputs: [a1]}\n"
        "    - {id: b2, type: EFFECT, config: {effect: dog}, inputs: [a2]}\n"
        "    - {id: out, type: BLEND, inputs: [b1, b2]}\n"
    )
    plan = plan_of(text, src=VIDEO)
    made = {step.cache_id for step in plan.steps}
    assert all(input_id in made for step in plan.steps for input_id in step.inputs)
    assert [step.node_id for step in plan.steps if step.type != "SOURCE"] == ["a1", "b1", "b2", "out"]


def test_content_that_is_not_media_is_refused_before_running() -> None:
    with pytest.raises(
        RecipeError, match=r"application/vnd\.apple\.mpegurl: not an image, video or audio"
    ) as caught:
        make_plan(
            builtin_recipe("invert"), "r", {"input": VIDEO}, TOOLS, {VIDEO: "application/vnd.apple.mpegurl"}
        )
    assert (caught.value.node, caught.value.field) == ("input", "config.input")


def test_sound_only_mp4_is_audio() -> None:
    head = b"\x00\x00\x00\x20ftypM4A \x00\x00\x02\x00M4A isomiso2"
    assert sniff_media_type(head) == "audio/mp4"
    assert sniff_media_type(head.replace(b"M4A ", b"isom", 1)) == "video/mp4"


def test_bytes_that_only_start_like_json_are_not_served_as_json() -> None:
    """Random bytes starting with "{" match JSON's magic; unless they are text, they are binary
    (found by the API fuzzer: a client decoding the "JSON" it was served failed)."""
    assert sniff_media_type(b"{\xb6$\xad*e\xf9\x91" + bytes(range(128, 256))) == "application/octet-stream"
    assert sniff_media_type(b'{"frames": [1, 2]}') == "application/json"
