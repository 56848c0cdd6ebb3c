"""DAG node types: inputs they take, their config fields (units, defaults) and what they make.

A node's config is normalized here: unknown fields refused, defaults filled in, numbers in one
form, so that two spellings of the same recipe give the same cache ids. ``version`` is part of
every cache id: raise it when a type's output for the same config and inputs may change.
``kinds`` lists the media a type takes (image, video, audio); how each type treats video and
audio is in ``node.media.ops``, and docs/recipes-and-media.md "Node types" sums both up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from node.executor.bindings import FEATURES, analyses_of, normalize_at, split_bindings
from node.executor.errors import RecipeError
from node.pixels.effects import EFFECTS
from node.pixels.params import Param, normalize_params

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
IMAGE_RUNTIME = ("numpy", "pillow", "zlib")  # tools whose versions decide image bytes
MEDIA_RUNTIME = ("ffmpeg",)  # and video and audio bytes
ANALYSIS_RUNTIME = ("ffmpeg", "librosa", "numba", "numpy", "scipy")  # and an analysis record's
# Parameters with no per-frame form in their ffmpeg filter (see node.media.curves).
FIXED_TRANSFORM = {
    "speed": "a clip's speed decides its length, which must be known before it runs",
    "sharpen": "ffmpeg's unsharp filter takes no per-frame value",
}


@dataclass(frozen=True)
class NodeType:
    """What a node of this type takes and makes."""

    name: str
    version: str
    min_inputs: int
    max_inputs: int | None
    params: tuple[Param, ...]
    description: str
    kinds: tuple[str, ...] = ("image", "video")  # media kinds its inputs may be

    def check_inputs(self, node_id: str, count: int) -> None:
        if count < self.min_inputs or (self.max_inputs is not None and count > self.max_inputs):
            wanted = (
                str(self.min_inputs) if self.min_inputs == self.max_inputs else f"at least {self.min_inputs}"
            )
            if self.max_inputs is not None and self.min_inputs != self.max_inputs:
                wanted = f"{self.min_inputs} to {self.max_inputs}"
            raise RecipeError(f"{self.name} takes {wanted} inputs, got {count}", node=node_id, field="inputs")

    def normalize(self, node_id: str, config: Mapping[str, Any], input_count: int = 1) -> dict[str, Any]:
        """The canonical config of a node of this type; RecipeError naming the first bad field."""
        if self.name == "ANALYZE":
            return _analysis_features(node_id, config)
        if self.name == "SEGMENT" and "at" in config:
            return _segment_at(node_id, config)
        if self.name == "SEGMENT":
            config = _segment_bounds(node_id, config)
        bound: dict[str, Any] = {}
        if self.name == "TRANSFORM":
            config, bound = split_bindings(node_id, self.params, config, fixed=FIXED_TRANSFORM)
        values, problems = normalize_params(self.params, config)
        if problems:
            field, problem = next(iter(sorted(problems.items())))
            raise RecipeError(problem, node=node_id, field=f"config.{field}")
        _check_values(self.name, node_id, values, input_count)
        return _with_analyses({**values, **bound})


def _check_values(type_name: str, node_id: str, values: dict[str, Any], input_count: int) -> None:
    """Rules across fields, and fields that depend on the number of inputs."""
    if type_name == "RESIZE" and not (values["width"] or values["height"]):
        raise RecipeError("RESIZE needs a width or a height above 0", node=node_id, field="config.width")
    if type_name == "SEGMENT" and input_count != 1:
        raise RecipeError("SEGMENT cuts one clip; several are cut between with at: {from: ...}",
                          node=node_id, field="inputs")  # fmt: skip
    if type_name == "SEGMENT" and values["end"] and values["end"] <= values["start"]:
        raise RecipeError("SEGMENT must end after it starts", node=node_id, field="config.end")
    if type_name == "AUDIO_MIX" and values["gains"] and len(values["gains"]) != input_count:
        raise RecipeError(
            f"gains has {len(values['gains'])} values for {input_count} inputs",
            node=node_id,
            field="config.gains",
        )
    if type_name == "MUX":
        for key in ("video", "audio"):
            if values[key] >= input_count:
                raise RecipeError(
                    f"{key} names input {values[key]}, but inputs are numbered 0 to {input_count - 1}",
                    node=node_id,
                    field=f"config.{key}",
                )


def _segment_bounds(node_id: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """SEGMENT takes offset + duration or start + end; both become {start, end} (end 0: to the end)."""
    given = dict(config)
    if {"offset", "duration"} & set(given):
        if {"start", "end"} & set(given):
            raise RecipeError(
                "give offset and duration, or start and end, not both", node=node_id, field="config.start"
            )
        offset, duration = given.pop("offset", 0.0), given.pop("duration", 0.0)
        for field, value in (("offset", offset), ("duration", duration)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise RecipeError(
                    f"must be a number of seconds, 0 or more, got {value!r}",
                    node=node_id,
                    field=f"config.{field}",
                )
        given["start"] = offset
        given["end"] = offset + duration if duration else 0.0
    return given


def _segment_at(node_id: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """SEGMENT with ``at``: cut between its clips at an analysis's events (no start or end)."""
    others = sorted(set(config) - {"at"})
    if others:
        raise RecipeError("give at, or start and end, not both", node=node_id, field=f"config.{others[0]}")
    return _with_analyses({"at": normalize_at(node_id, config["at"])})


def _analysis_features(node_id: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """ANALYZE's ``features``: a non-empty list of known names, kept in one order."""
    given = dict(config)
    features = given.pop("features", None)
    if not isinstance(features, list) or not features or not all(isinstance(name, str) for name in features):
        raise RecipeError(
            f"must be a list of any of {', '.join(FEATURES)}", node=node_id, field="config.features"
        )
    unknown = [name for name in features if name not in FEATURES]
    if unknown:
        raise RecipeError(f"unknown feature {unknown[0]!r}; known: {', '.join(FEATURES)}", node=node_id,
                          field="config.features")  # fmt: skip
    normalized, problems = normalize_params(NODE_TYPES["ANALYZE"].params, given)
    if problems:
        field, problem = next(iter(sorted(problems.items())))
        raise RecipeError(problem, node=node_id, field=f"config.{field}")
    return {**normalized, "features": [name for name in FEATURES if name in features]}


def _with_analyses(config: dict[str, Any]) -> dict[str, Any]:
    """The config with ``analyses`` (the ANALYZE nodes it reads, its extra inputs) when any."""
    analyses = analyses_of(config)
    return {**config, "analyses": list(analyses)} if analyses else config


def _px(name: str, default: int, description: str, low: int = 0) -> Param:
    return Param(name, "int", default, description, low, 16384, unit="px")


def _seconds(name: str, default: float, description: str, maximum: float = 86400.0) -> Param:
    return Param(name, "float", default, description, 0.0, maximum, unit="s")


def _sample_rate() -> Param:
    return Param("sample_rate", "int", 0, "output sample rate; 0: the first clip's", 0, 192000, unit="Hz")


def _opacity() -> Param:
    return Param("opacity", "float", 1.0, "weight of the upper input", 0.0, 1.0)


NODE_TYPES: dict[str, NodeType] = {
    node_type.name: node_type
    for node_type in (
        NodeType(
            "SOURCE",
            "1",
            0,
            0,
            (),
            "Content by variable input, registry asset or CID.",
            ("image", "video", "audio"),
        ),
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
            "Scale an image, or every frame of a clip.",
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
            "Place the second input over the first (an image over a clip stays for its length).",
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
            (
                _seconds("crossfade", 0.0, "overlap between one clip and the next", 60.0),
                _px("width", 0, "output width; 0: the first clip's"),
                _px("height", 0, "output height; 0: the first clip's"),
                Param("fps", "float", 0.0, "output frame rate; 0: the first clip's", 0.0, 240.0, unit="1/s"),
                _sample_rate(),
            ),
            "Clips one after another, in input order, normalized to one size, frame rate and "
            "sample rate (letterboxed, never stretched); planned as a balanced tree of pairs.",
            ("video", "audio"),
        ),
        NodeType(
            "SEGMENT",
            "1",
            1,
            8,
            (
                _seconds("start", 0.0, "first instant kept (or give offset)"),
                _seconds("end", 0.0, "first instant dropped; 0: to the end (or give duration)"),
            ),
            "A frame-exact cut: frames round(start * fps) up to round(end * fps), sound cut at the same "
            "instants. offset/duration are accepted as another spelling of start/end. With "
            "at: {from: ANALYSIS.beats, every: N} instead, cuts between its clips (1 to 8) at those "
            "events, piece i from clip i mod n, joined.",
            ("video", "audio"),
        ),
        NodeType(
            "TRANSFORM",
            "1",
            1,
            1,
            (
                Param("brightness", "float", 0.0, "added to luma (eq)", -1.0, 1.0),
                Param("contrast", "float", 1.0, "luma contrast (eq)", 0.0, 4.0),
                Param("saturation", "float", 1.0, "colour saturation (eq)", 0.0, 3.0),
                Param("gamma", "float", 1.0, "gamma (eq)", 0.1, 10.0),
                Param("hue", "float", 0.0, "hue rotation", -180.0, 180.0, unit="degrees"),
                Param("blur", "float", 0.0, "Gaussian blur sigma; 0: none", 0.0, 50.0, unit="px"),
                Param("sharpen", "float", 0.0, "unsharp mask amount (5x5 luma); 0: none", 0.0, 5.0),
                Param("speed", "float", 1.0, "playback speed; sound keeps its pitch", 0.25, 4.0, unit="x"),
            ),
            "Colour, sharpness and speed of a clip; on audio only speed applies.",
            ("video", "audio"),
        ),
        NodeType(
            "ANALYZE",
            "1",
            1,
            1,
            (
                Param(
                    "fps",
                    "float",
                    0.0,
                    "frames per second of a sound's timeline; 0: 30 (a clip: its own)",
                    0.0,
                    240.0,
                    unit="1/s",
                ),
                Param(
                    "scene_threshold",
                    "float",
                    10.0,
                    "scdet score above which a frame starts a scene",
                    0.1,
                    100.0,
                    unit="%",
                ),
            ),
            "A JSON analysis record of a clip or sound: features (any of beats, tempo, onsets, energy, "
            "bands, loudness, scenes) on the input's frame timeline.",
            ("video", "audio"),
        ),
        NodeType(
            "MUX",
            "1",
            2,
            8,
            (
                Param("video", "int", 0, "input whose picture is kept (0-based)", 0, 7),
                Param("audio", "int", 1, "input whose sound is kept (0-based)", 0, 7),
                Param(
                    "length",
                    "choice",
                    "video",
                    "video: the picture's length, sound cut or padded with silence; shortest: both cut",
                    choices=("video", "shortest"),
                ),
            ),
            "The picture of one input with the sound of another.",
            ("video", "audio"),
        ),
        NodeType(
            "AUDIO_MIX",
            "1",
            2,
            16,
            (
                Param("gains", "floats", [], "gain per input; empty: 0 dB each", -60.0, 24.0, unit="dB"),
                Param(
                    "normalize",
                    "choice",
                    "none",
                    "loudness: EBU R128 to -16 LUFS (loudnorm)",
                    choices=("none", "loudness"),
                ),
                Param(
                    "duration",
                    "choice",
                    "longest",
                    "how long the mix lasts",
                    choices=("longest", "shortest", "first"),
                ),
            ),
            "The inputs' sound summed (stereo, the first input's sample rate), each at its gain.",
            ("video", "audio"),
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
    given, bound = split_bindings(node_id, effect.params, given, fixed={})
    values, problems = normalize_params(effect.params, given)
    if problems:
        field, problem = next(iter(sorted(problems.items())))
        raise RecipeError(problem, node=node_id, field=f"config.{field}")
    return _with_analyses({"effect": name, "effect_version": effect.version, "params": {**values, **bound}})
