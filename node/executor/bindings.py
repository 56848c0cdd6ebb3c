"""Recipe fields that read an analysis: parameter bindings and analysis-driven cuts.

A numeric parameter of an EFFECT or a TRANSFORM may be *bound* to a series of an ANALYZE node
instead of a constant::

    sigma: {bind: music.energy, range: [0.5, 8], smooth: 0.1, offset: 0}

and a SEGMENT may cut at an analysis's events::

    at: {from: music.beats, every: 4, skip: 0}

Both are normalized here (defaults filled in, bounds checked against the parameter's), and the
node ids they name become the node's ``analyses``: extra inputs after its declared ones, so the
step's cache id covers the analysis (and through it the analysed content and the analyser's
runtime). Which series an ANALYZE feature provides is :data:`SERIES`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from node.executor.errors import RecipeError
from node.media.curves import bound, is_binding
from node.pixels.params import Param

# series name -> (the ANALYZE feature that makes it, whether it is events or one value per frame)
SERIES: dict[str, tuple[str, str]] = {
    "energy": ("energy", "curve"),
    "bands.low": ("bands", "curve"),
    "bands.mid": ("bands", "curve"),
    "bands.high": ("bands", "curve"),
    "loudness": ("loudness", "curve"),
    "beats": ("beats", "events"),
    "onsets": ("onsets", "events"),
    "scenes": ("scenes", "events"),
}
FEATURES = ("beats", "tempo", "onsets", "energy", "bands", "loudness", "scenes")
BINDING_FIELDS = {"bind", "range", "smooth", "offset"}
AT_FIELDS = {"from", "every", "skip"}
MAX_SMOOTH_S = 10.0
MAX_OFFSET_S = 60.0
MAX_EVERY = 1000


def split_bindings(
    node_id: str, params: Iterable[Param], given: Mapping[str, Any], *, fixed: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(the constants, the normalized bindings) of ``given``; ``fixed`` names parameters that
    cannot be bound, with why."""
    known = {param.name: param for param in params}
    constants, bound = {}, {}
    for name, value in given.items():
        if not is_binding(value) or name not in known:
            constants[name] = value
            continue
        if name in fixed:
            raise RecipeError(f"{name} cannot be bound to an analysis: {fixed[name]}", node=node_id,
                              field=f"config.{name}")  # fmt: skip
        bound[name] = normalize_binding(node_id, f"config.{name}", value, known[name])
    return constants, bound


def normalize_binding(node_id: str, field: str, spec: Mapping[str, Any], param: Param) -> dict[str, Any]:
    """``{bind, range, smooth, offset}`` with defaults; RecipeError naming the bad part."""
    if param.kind not in ("float", "int"):
        raise RecipeError(f"only numbers can be bound, and this is {param.kind}", node=node_id, field=field)
    unknown = sorted(set(spec) - BINDING_FIELDS)
    if unknown:
        raise RecipeError(f"unknown binding field {unknown[0]!r}; known: bind, range, smooth, offset",
                          node=node_id, field=f"{field}.{unknown[0]}")  # fmt: skip
    source = _series_name(node_id, f"{field}.bind", spec["bind"], kinds=("curve", "events"))
    low_high = spec.get("range", [param.minimum, param.maximum])
    if (
        not isinstance(low_high, list)
        or len(low_high) != 2
        or not all(_is_number(value) for value in low_high)
    ):
        raise RecipeError("range must be two numbers: [value at the lowest, value at the highest]",
                          node=node_id, field=f"{field}.range")  # fmt: skip
    try:
        ends = [float(param.normalize(value)) for value in low_high]
    except ValueError as exc:
        raise RecipeError(f"range: {exc}", node=node_id, field=f"{field}.range") from None
    smooth = _bounded(node_id, f"{field}.smooth", spec.get("smooth", 0.0), 0.0, MAX_SMOOTH_S)
    offset = _bounded(node_id, f"{field}.offset", spec.get("offset", 0.0), -MAX_OFFSET_S, MAX_OFFSET_S)
    return {"bind": source, "range": ends, "smooth": smooth, "offset": offset}


def normalize_at(node_id: str, spec: Any) -> dict[str, Any]:
    """SEGMENT's ``at``: ``{from: NODE.SERIES, every: N, skip: K}`` (events only)."""
    field = "config.at"
    if not isinstance(spec, Mapping):
        raise RecipeError("must be {from: ANALYSIS.beats|onsets|scenes, every: N}", node=node_id, field=field)
    unknown = sorted(set(spec) - AT_FIELDS)
    if unknown:
        raise RecipeError(f"unknown field {unknown[0]!r}; known: from, every, skip", node=node_id,
                          field=f"{field}.{unknown[0]}")  # fmt: skip
    source = _series_name(node_id, f"{field}.from", spec.get("from"), kinds=("events",))
    every = _bounded(node_id, f"{field}.every", spec.get("every", 1), 1, MAX_EVERY, whole=True)
    skip = _bounded(node_id, f"{field}.skip", spec.get("skip", 0), 0, MAX_EVERY, whole=True)
    return {"from": source, "every": int(every), "skip": int(skip)}


def analyses_of(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The ANALYZE node ids a normalized config reads, sorted: its extra inputs, in order."""
    names = [str(spec["bind"]).split(".", 1)[0] for spec in _bindings(config).values()]
    if isinstance(config.get("at"), Mapping):
        names.append(str(config["at"]["from"]).split(".", 1)[0])
    return tuple(sorted(set(names)))


def _bindings(config: Mapping[str, Any]) -> Mapping[str, Mapping[str, Any]]:
    """The bound parameters of a normalized EFFECT (under ``params``) or TRANSFORM config."""
    return bound(config.get("params", config))


def check_references(
    node_id: str, config: Mapping[str, Any], analyzers: Mapping[str, Mapping[str, Any]]
) -> None:
    """Each series a node reads comes from an ANALYZE node of the recipe that computes it."""
    sources = [(f"config.{name}.bind", spec["bind"]) for name, spec in _bindings(config).items()]
    if isinstance(config.get("at"), Mapping):
        sources.append(("config.at.from", config["at"]["from"]))
    for field, source in sources:
        analyzer, series = str(source).split(".", 1)
        if analyzer not in analyzers:
            raise RecipeError(f"{source!r} names no ANALYZE node: {analyzer!r} is not one",
                              node=node_id, field=field)  # fmt: skip
        feature = SERIES[series][0]
        if feature not in analyzers[analyzer]["features"]:
            raise RecipeError(
                f"{analyzer} does not compute {feature}: add it to its features",
                node=node_id,
                field=field,
            )


def _series_name(node_id: str, field: str, value: Any, *, kinds: tuple[str, ...]) -> str:
    wanted = sorted(name for name, (_, kind) in SERIES.items() if kind in kinds)
    if not isinstance(value, str) or "." not in value or value.split(".", 1)[1] not in wanted:
        raise RecipeError(f"must be ANALYSIS_NODE.SERIES with a series of {', '.join(wanted)}, got {value!r}",
                          node=node_id, field=field)  # fmt: skip
    return value


def _bounded(node_id: str, field: str, value: Any, low: float, high: float, *, whole: bool = False) -> float:
    if not _is_number(value) or not low <= value <= high or (whole and float(value) != int(value)):
        what = "a whole number" if whole else "a number"
        raise RecipeError(
            f"must be {what} from {low:g} to {high:g}, got {value!r}", node=node_id, field=field
        )
    return float(value) + 0.0


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value  # noqa: PLR0124
