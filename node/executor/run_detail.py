"""What a run shows of itself (``GET /runs/{id}``, the run page, ``artdag status``): its times,
and each step of its plan with what it does and what happened to it.

Every work step of the plan is listed from the start (``pending`` until a node reports it), with
its type, its normalized config (the parameters it runs with, defaults filled in), the steps it
reads, and for a fused step the recipe nodes it covers. Its events say the rest: its state, the
node that computed it, its output or error, when it started and ended (the time of the event,
from its stream id), how long it waited once its inputs were ready (``queued_s``) and how long it
ran (``running_s``), and for a long video step its latest ``step_progress`` (frames, percent,
ETA).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from node.executor.planner import Plan
from node.sync.run_events import STEP_PROGRESS, STEP_STATES
from node.sync.run_status import RunRecord

Event = tuple[str, dict[str, Any]]  # (stream id, event) as RunEvents.read gives them
PROGRESS_FIELDS = ("frames", "total_frames", "percent", "eta_s")
OUTCOME_FIELDS = ("cid", "error", "fused", "node", "cache_id", "log")  # copied from a step's events


def run_times(record: RunRecord, now: float) -> dict[str, float | None]:
    """Seconds the run waited in the queue, has run, and in all (to ``now`` while unfinished);
    None for what has not begun."""
    created = _seconds(record["created"])
    started = _seconds(record.get("started"))
    finished = _seconds(record.get("finished"))
    end = finished if finished is not None else now
    return {
        "queued_s": _span(created, started if started is not None else end),
        "running_s": _span(started, end) if started is not None else None,
        "duration_s": _span(created, end),
    }


def step_details(plan: Plan, events: list[Event], run_started: str | None, node_id: str) -> dict[str, Any]:
    """Each work step of ``plan`` by its recipe node id, with its state and times from
    ``events``; ``node_id`` is the node asked (a cached step's result was found by it)."""
    names = {step.cache_id: step.node_id for step in plan.steps}
    steps: dict[str, dict[str, Any]] = {
        step.node_id: {
            "state": "pending",
            "type": step.type,
            "config": dict(step.config),
            "inputs": [names.get(cache_id, cache_id) for cache_id in step.inputs],
            "cache_id": step.cache_id,
            **({"fused": list(step.fused)} if step.fused else {}),
        }
        for step in plan.steps
        if step.type != "SOURCE"
    }
    for stream_id, event in events:
        _apply(steps, _event_seconds(stream_id), event)
    for step in steps.values():
        if step["state"] in ("cached", "done") or "node" in step:
            step.setdefault("node", node_id)
    _times(plan, steps, _seconds(run_started))
    return steps


def _apply(steps: dict[str, dict[str, Any]], at: float, event: dict[str, Any]) -> None:
    kind, name = event["kind"], str(event.get("step", ""))
    if kind == STEP_PROGRESS and name in steps:
        steps[name]["progress"] = {key: event[key] for key in PROGRESS_FIELDS if key in event}
        return
    if kind not in STEP_STATES:
        return
    step = steps.setdefault(name, {"state": "pending"})  # a step of an older plan's events
    step["state"] = STEP_STATES[kind]
    step.update({key: event[key] for key in OUTCOME_FIELDS if key in event})
    if kind == "step_started":
        step["started"] = at
        for stale in ("finished", "error", "progress", "log"):
            step.pop(stale, None)
    else:
        step["finished"] = at
        step.pop("progress", None)


def _times(plan: Plan, steps: dict[str, dict[str, Any]], run_started: float | None) -> None:
    """Turn event times into ISO times and spans: a step queued from when its last input
    was done (or the run started) until it started; it ran until it finished (or now)."""
    finished = {name: step.get("finished") for name, step in steps.items()}
    now = datetime.now(UTC).timestamp()
    for plan_step in plan.steps:
        step = steps.get(plan_step.node_id)
        if step is None:
            continue
        started, ended = step.get("started"), step.get("finished")
        inputs_done = [finished.get(name) for name in step.get("inputs", [])]
        ready = max([time for time in (run_started, *inputs_done) if time is not None], default=None)
        if started is not None:
            step["queued_s"] = _span(ready, started) if ready is not None else None
            step["running_s"] = _span(started, ended if ended is not None else now)
            step["started"] = _iso(started)
        if ended is not None:
            step["finished"] = _iso(ended)


def _event_seconds(stream_id: str) -> float:
    """A stream entry's time: Redis ids are ``milliseconds-sequence``."""
    return int(stream_id.split("-", 1)[0]) / 1000


def _seconds(iso: str | None) -> float | None:
    if not iso:
        return None
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _span(start: float | None, end: float) -> float | None:
    return None if start is None else round(max(0.0, end - start), 3)
