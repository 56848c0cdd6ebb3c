"""The orchestrate phase: a SEGMENT cut at an analysis's events, planned once the analysis is done.

A recipe node ``SEGMENT {at: {from: music.beats, every: 4}}`` over clips ``[a, b]`` is planned as
two steps whose cache ids are known before anything runs (``planner._expandable``):

- ``EXPAND`` (inputs: the clips and the analysis): a claimed step like any other, whose output is
  the *expansion record* (``artdag/expansion``, canonical JSON): the cut times and the steps it
  adds, with their cache ids: one SEGMENT per piece (piece i from clip i mod n, frame-exact) and
  the SEQUENCE that joins them. Its receipt signs that record's CID, and the provenance names it,
  so the completed plan is deterministic and verifiable;
- the node's own step, whose output *is* the join's (zero-copy, as ``identity``): steps after
  it were planned from its cache id, which covers the EXPAND step's.

Every scheduler running the plan splices the record's steps in when the EXPAND step is done
(``grow``), so the pieces are claimed and shared between nodes like every other step.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from node.canonical import canonical_json
from node.executor.errors import StepFailed
from node.executor.nodetypes import NODE_TYPES
from node.executor.planner import Plan, Step, plan_fragment, tool_versions
from node.executor.recipe import RecipeNode

RECORD_KIND = "artdag/expansion"
MAX_PIECES = 2000  # a cut list longer than this is refused: the plan would not be readable
Load = Callable[[str], Awaitable[Mapping[str, Any] | None]]  # an EXPAND cache id -> its record


def expansion_record(step: Step, analysis: Mapping[str, Any], tools: Mapping[str, str]) -> dict[str, Any]:
    """What the EXPAND ``step`` adds, given its analysis record (its last input's bytes)."""
    at, node_id = step.config["at"], str(step.config["node"])
    series = str(at["from"]).split(".", 1)[1]
    events = analysis.get(series)
    if not isinstance(events, Mapping) or not isinstance(events.get("times"), list):
        raise StepFailed(f"the analysis has no {series}: is {series} among its features?", step=node_id)
    duration = float(analysis.get("duration_s", 0.0))
    cuts = _cuts([float(time) for time in events["times"]][at["skip"] :: at["every"]], duration,
                 float(analysis.get("fps", 30.0)))  # fmt: skip
    if len(cuts) + 1 > MAX_PIECES:
        raise StepFailed(f"{len(cuts) + 1} pieces: at most {MAX_PIECES}; raise every", step=node_id)
    clips = list(step.inputs[:-1])
    nodes = _piece_nodes(node_id, len(clips), [0.0, *cuts, duration])
    output = nodes[-1].id if step.config["output"] else ""
    known = {
        f"{node_id}~clip{index}": (cache_id, step.config["kind"]) for index, cache_id in enumerate(clips)
    }
    steps = plan_fragment(nodes, known, output, tools)
    return {
        "kind": RECORD_KIND,
        "version": 1,
        "expansion": step.cache_id,
        "node": node_id,
        "cuts": cuts,
        "steps": [added.record() for added in steps],
        "output": steps[-1].cache_id,
    }


def expansion_bytes(step: Step, analysis: Mapping[str, Any]) -> bytes:
    """The EXPAND ``step``'s output: its expansion record as canonical JSON, planned with this
    node's tool versions (which its runtime check made sure are the step's)."""
    return canonical_json(expansion_record(step, analysis, tool_versions()))


def _cuts(times: list[float], duration: float, fps: float) -> list[float]:
    """The times inside the analysed span, at most one per frame of its timeline, in order."""
    cuts: list[float] = []
    frames: set[int] = {0, math.floor(duration * fps + 0.5)}
    for time in sorted(times):
        frame = math.floor(time * fps + 0.5)
        if 0 < time < duration and frame not in frames:
            frames.add(frame)
            cuts.append(time)
    return cuts


def _piece_nodes(node_id: str, clip_count: int, bounds: list[float]) -> list[RecipeNode]:
    segment, sequence = NODE_TYPES["SEGMENT"], NODE_TYPES["SEQUENCE"]
    pieces = [
        RecipeNode(
            f"{node_id}~{index}",
            "SEGMENT",
            segment.normalize(node_id, {"start": start, "end": end}),
            (f"{node_id}~clip{index % clip_count}",),
        )
        for index, (start, end) in enumerate(itertools.pairwise(bounds))
    ]
    if len(pieces) == 1:
        return pieces
    joined = sequence.normalize(node_id, {}, len(pieces))
    return [*pieces, RecipeNode(f"{node_id}~join", "SEQUENCE", joined, tuple(piece.id for piece in pieces))]


def spliced(step: Step, record: Mapping[str, Any]) -> tuple[Step, list[Step]]:
    """The node's step reading the join's output, and the steps the record adds."""
    if record.get("kind") != RECORD_KIND or record.get("expansion") != step.expansion:
        raise StepFailed(
            f"the expansion record of {step.node_id} is not the one its plan names", step=step.node_id
        )
    added = [Step.from_record(item) for item in record["steps"]]
    return dataclasses.replace(step, inputs=(step.expansion, str(record["output"]))), added


async def completed(plan: Plan, load: Load) -> Plan:
    """``plan`` with every expansion done so far spliced in (each added step before the step
    that reads it): the plan a finished run's provenance and page describe."""
    steps: list[Step] = []
    seen = {step.cache_id for step in plan.steps}
    for planned in plan.steps:
        record = await load(planned.expansion) if planned.expansion else None
        if record is None:
            steps.append(planned)
            continue
        step, added = spliced(planned, record)
        steps += [item for item in added if item.cache_id not in seen]
        seen.update(item.cache_id for item in added)
        steps.append(step)
    return dataclasses.replace(plan, steps=tuple(steps))
