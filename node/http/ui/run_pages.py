"""``/runs`` and ``/run/{id}`` for browsers: the runs with their outputs, and one run drawn as its
plan's DAG, followed live (``static/app.js`` reads the run's SSE stream)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from node.auth.local import User
from node.errors import InvalidInput, NodeError
from node.http.appkeys import NODE
from node.http.cache import int_param
from node.http.runs import STATUSES
from node.http.ui.analysis_svg import analysis_svg
from node.http.ui.choices import media_choices
from node.http.ui.dag import DagNode, DagPicture, layout
from node.http.ui.formats import media_kind
from node.http.ui.templating import page
from node.http.ui.users import current_user
from node.media.curves import is_binding
from node.pixels.effects import EFFECTS
from node.sync.run_status import is_final

PAGE_SIZE = 25
MAX_DRAWN_BYTES = 16 * 1024 * 1024  # an analysis record read to be drawn
HIDDEN_SETTINGS = frozenset(
    {"encode", "effect_version", "input", "cid", "expansion", "analyses", "node", "output"}
)  # plumbing, not choices


@page("runs.html")
async def runs_page(request: web.Request) -> dict[str, Any]:
    """Runs, newest first, filtered by status and owner (the page's script refreshes the table)."""
    offset = int_param(request, "offset", 0, 0, 10**6)
    status = request.query.get("status") or None
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(STATUSES)}", field="status")
    owner = request.query.get("owner", "").strip() or None
    runs = await request.app[NODE].run_manager.listing(offset, PAGE_SIZE + 1, status, owner)
    return {
        "runs": runs[:PAGE_SIZE],
        "statuses": STATUSES,
        "status": status or "",
        "owner": owner or "",
        "offset": offset,
        "page_size": PAGE_SIZE,
        "more": len(runs) > PAGE_SIZE,
    }


@page("run.html")
async def run_page(request: web.Request) -> dict[str, Any]:
    """One run: its plan drawn with each step's state and node, its output and provenance."""
    app = request.app
    record, plan = await app[NODE].run_manager.detail_and_plan(
        request.match_info["run_id"], app[NODE].identity.node_id
    )
    states = record["steps"]
    entries = await app[NODE].store.index.get_many([item["content_id"] for item in record["inputs"]])
    by_id = {entry.content_id: entry for entry in entries}
    user = await current_user(request)
    finished = is_final(record["status"])
    again = run_again(record)
    return {
        "run": record,
        "progress": record["progress"],
        "picture": plan_picture(plan, states) if plan else None,
        "steps": _step_rows(plan, states) if plan else [],
        "inputs": [{**item, "entry": by_id.get(item["content_id"])} for item in record["inputs"]],
        "output_kind": media_kind(output["media_type"] if (output := record["output"]) else None),
        "finished": finished,
        "may_change": user_may_change(user, record["owner"]),
        "again": again,
        "media": await media_choices(app) if again and user else [],  # for the form of "Run again"
        "analyses": await _analyses(app, states),
    }


async def _analyses(app: web.Application, states: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each done ANALYZE step's record drawn (``analysis_svg``), with a link to its JSON."""
    drawn = []
    for name, step in states.items():
        if step.get("type") != "ANALYZE" or not step.get("cid"):
            continue
        try:
            entry = await app[NODE].store.resolve(str(step["cid"]))
            record = await app[NODE].store.read_json(entry, MAX_DRAWN_BYTES)
        except (NodeError, ValueError):  # gone, too large or unreadable: the table still links it
            continue
        tempo = (record.get("tempo") or {}).get("bpm")
        drawn.append({"step": name, "cid": step["cid"], "svg": analysis_svg(record, f"Analysis {name}"),
                      "tempo": tempo, "features": record.get("features", [])})  # fmt: skip
    return drawn


def run_again(record: dict[str, Any]) -> dict[str, Any] | None:
    """For a finished run of a built-in effect: the effect, its parameters' schema and this
    run's values and input, for a form that renders it again with other parameters."""
    step = record["steps"].get(record["recipe"]["name"])
    if step is None or step.get("type") != "EFFECT" or record["recipe"]["name"] not in EFFECTS:
        return None
    if not is_final(record["status"]) or len(record["inputs"]) != 1:
        return None
    effect = EFFECTS[record["recipe"]["name"]]
    inputs = record["inputs"][0]["content_id"]
    return {
        "effect": effect.name,
        "params": effect.schema()["params"],
        "values": dict((step.get("config") or {}).get("params") or {}),
        "input": inputs,
    }


def plan_picture(plan: dict[str, Any], states: dict[str, dict[str, Any]]) -> DagPicture:
    """The plan's steps as a DAG picture (states are drawn by the template from ``steps``)."""
    node_of: dict[str, str] = {}
    for step in plan["steps"]:
        node_of.setdefault(step["cache_id"], step["node_id"])
    # The steps an expansion added (NODE~0, NODE~join, ...) are drawn after the EXPAND step
    # that planned them, though they read only the clips.
    expanders = {
        step["node_id"]: node_of.get(str((step.get("config") or {}).get("expansion")), "")
        for step in plan["steps"]
        if (step.get("config") or {}).get("expansion")
    }
    nodes = [
        DagNode(
            id=step["node_id"],
            kind=step["type"],
            inputs=tuple(node_of[cache_id] for cache_id in step["inputs"] if cache_id in node_of)
            + _planned_by(step["node_id"], expanders),
            detail=step_detail(step["type"], step.get("config") or {}),
        )
        for step in plan["steps"]
    ]
    output = next((step["node_id"] for step in plan["steps"] if step["cache_id"] == plan["output"]), None)
    return layout(nodes, output)


def _planned_by(node_id: str, expanders: Mapping[str, str]) -> tuple[str, ...]:
    expander = expanders.get(node_id.split("~", 1)[0], "") if "~" in node_id else ""
    return (expander,) if expander else ()


def step_detail(kind: str, config: Mapping[str, Any]) -> str:
    """What a box says under a step's type: the effect, or which input a source is."""
    if kind == "EFFECT":
        return str(config.get("effect", ""))
    if kind == "SOURCE":
        return str(config["name"]) if config.get("input") else "fixed"
    if kind == "ANALYZE":
        return ", ".join(config.get("features") or [])
    if isinstance(config.get("at"), Mapping):
        return f"at {config['at']['from']} / {config['at']['every']}"
    return ""


def step_settings(kind: str, config: Mapping[str, Any]) -> str:
    """What a step runs with, in a line: ``blur: sigma 8``, a fused chain's effects in order,
    a node type's own settings (``mode multiply``); empty for a source."""
    if kind == "SOURCE":
        return ""
    if kind == "CHAIN":
        return " -> ".join(step_settings(op["type"], op.get("config") or {}) for op in config.get("ops", []))
    if kind == "EFFECT":
        params = ", ".join(f"{name} {_value(value)}" for name, value in (config.get("params") or {}).items())
        return f"{config.get('effect', '')}: {params}" if params else str(config.get("effect", ""))
    shown = {name: value for name, value in config.items() if name not in HIDDEN_SETTINGS}
    return ", ".join(f"{name} {_value(value)}" for name, value in shown.items())


def _value(value: Any) -> str:
    """A setting as the table shows it: ``8``, or ``music.energy -> 0.5..8`` for a binding."""
    if is_binding(value):
        low, high = value["range"]
        return f"{value['bind']} -> {low:g}..{high:g}"
    if isinstance(value, Mapping) and "from" in value:
        return f"{value['from']} every {value['every']}"
    if isinstance(value, list):
        return ", ".join(_value(item) for item in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _step_rows(plan: dict[str, Any], states: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for step in plan["steps"]:
        state = states.get(step["node_id"], {})
        default = "source" if step["type"] == "SOURCE" else "pending"
        rows.append(
            {
                "id": step["node_id"],
                "type": step["type"],
                "state": state.get("state", default),
                "node": state.get("node", ""),
                "cid": state.get("cid", ""),
                "error": state.get("error", ""),
                "cache_id": step["cache_id"],
                "settings": step_settings(step["type"], step.get("config") or {}),
                "fused": state.get("fused", []),
                "log": state.get("log", ""),
                "queued_s": state.get("queued_s"),
                "running_s": state.get("running_s"),
            }
        )
    return rows


def user_may_change(user: User | None, owner: str) -> bool:
    return user is not None and user.may_change(owner)
