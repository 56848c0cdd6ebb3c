"""``/runs``: start renders, list and inspect them, follow them live (SSE), cancel, delete."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import replace
from typing import Any

from aiohttp import web
from aiohttp_sse import sse_response

from node.auth.local import User
from node.errors import Conflict, Forbidden, InvalidInput, NodeError, NotFound
from node.executor.binding import bind, resolve_recipe
from node.executor.callbacks import checked_callback
from node.executor.provenance import RECORD_MAX_BYTES
from node.executor.recipe import Recipe
from node.executor.recipe_store import is_recipe_name
from node.executor.run_manager import Submission
from node.http.appkeys import NODE
from node.http.auth import require_user
from node.http.bodies import read_small_body
from node.http.cache import int_param
from node.http.hot import HOT
from node.http.limits import limits_of
from node.http.openapi import operation
from node.http.schemas import RECORD_LINKS, RUN_LINKS, answer, json_body, page, query, ref
from node.records import verify_record
from node.sync.index import ContentEntry
from node.sync.run_events import FINAL_EVENTS
from node.sync.run_status import RunRecord, RunStatus, is_final

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
OUTPUT_NAME = re.compile(r"[^\x00-\x1f/\\]{1,128}")
STATUSES = tuple(RunStatus)
EVENT_WAIT_MS = 5_000  # below the Redis client's socket timeout (10 s)
MAX_STREAM_ID_PART = 2**63
RUN_LIMITS = (
    "Refused, with nothing written, with 429 too_many_runs (Retry-After) while the user has "
    "ARTDAG_MAX_RUNS_PER_USER unfinished runs, and 413 quota_exceeded while they store as much as "
    "ARTDAG_QUOTA_BYTES allows (a run's output counts to its owner); the admin is exempt."
)


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body; 400 naming what is wrong, 413 over MAX_BODY_BYTES, 408
    if it is slow to come (``read_small_body``)."""
    raw = await read_small_body(request, MAX_BODY_BYTES)
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidInput(f"the body is not JSON: {exc}", field="body") from exc
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object", field="body")
    return body


@operation(
    "Start a render: a recipe (or effect name) and its inputs",
    "runs",
    {202: answer("Queued; follow it at url or events", ref("RunStarted"), RUN_LINKS)},
    errors=(400, 403, 404, 409, 413, 429, 503),
    description=RUN_LIMITS,
    auth=True,
    body=json_body(ref("RunRequest")),
)
async def create(request: web.Request) -> web.Response:
    """``POST /runs`` ``{"recipe": NAME|ID|CID, "inputs": [REF...]|{NAME: REF}, "params": {...},
    "output_name": ...}`` (``params`` only with a built-in effect's name)."""
    user = await require_user(request)
    limits = limits_of(request, user)  # asked before a recipe's bytes are stored
    await request.app[NODE].run_manager.check_capacity(owner=user.name, limits=limits)
    body = await read_json(request)
    output_name = checked_output_name(
        body, {"recipe", "inputs", "params", "output_name", "priority", "callback"}
    )
    priority, callback = checked_priority(request, user, body), await _callback_of(request, body)
    recipe, recipe_entry = await _recipe_of(request, user, body)
    inputs = body.get("inputs", [])
    submission = await bound_submission(
        request,
        user,
        recipe,
        recipe_entry,
        inputs=inputs,
        output_name=output_name,
        priority=priority,
        callback=callback,
    )
    return run_response(await request.app[NODE].run_manager.submit(submission))


@operation(
    "Start one run per item: one recipe over a list of inputs, validated as a whole",
    "runs",
    {202: answer("Every run, queued", ref("BatchStarted"))},
    errors=(400, 403, 404, 409, 413, 429, 503),
    description=RUN_LIMITS + " A batch counts as many runs as it has items.",
    auth=True,
    body=json_body(ref("BatchRequest")),
)
async def create_batch(request: web.Request) -> web.Response:
    """``POST /runs/batch`` ``{"recipe": ..., "items": [INPUTS, ...], "params": {...},
    "output_name": ...}``: a run per item, each item the ``inputs`` of ``POST /runs``. Every item
    is bound (and its media checked) before any run is submitted: one bad item is a 400 listing
    each bad one, and nothing is submitted. The output names get ``-1``, ``-2``, ... in order."""
    user = await require_user(request)
    node = request.app[NODE]
    body = await read_json(request)
    output_name = checked_output_name(
        body, {"recipe", "items", "params", "output_name", "priority", "callback"}
    )
    priority, callback = checked_priority(request, user, body), await _callback_of(request, body)
    items = body.get("items")
    if not isinstance(items, list) or not 1 <= len(items) <= node.settings.max_batch:
        raise InvalidInput(
            f"items is a list of 1 to {node.settings.max_batch} inputs (ARTDAG_MAX_BATCH), one per run",
            field="items",
        )
    await node.run_manager.check_capacity(adding=len(items), owner=user.name, limits=limits_of(request, user))
    recipe, recipe_entry = await _recipe_of(request, user, body)
    submissions, problems = [], []
    for index, inputs in enumerate(items):
        named = f"{output_name or recipe.name + '-output'}-{index + 1}"
        try:
            submissions.append(
                await bound_submission(
                    request,
                    user,
                    recipe,
                    recipe_entry,
                    inputs=inputs,
                    output_name=named,
                    priority=priority,
                    callback=callback,
                )
            )
        except (InvalidInput, NotFound) as exc:  # the item's own fault; an outage stays a 503
            field = exc.details.get("field")
            problems.append({"item": index, "field": field, "message": exc.message})
    if problems:
        listed = "; ".join(f"item {problem['item']}: {problem['message']}" for problem in problems[:20])
        raise InvalidInput(
            f"{len(problems)} of {len(items)} items are not valid, so no run was submitted: {listed}",
            field="items",
            problems=problems,
        )
    # The quota was asked for the batch as a whole, above: an early item's output (a cache hit
    # completes at once) must not refuse a later one after earlier ones were submitted.
    submissions = [replace(item, limits=replace(item.limits, quota=0)) for item in submissions]
    runs = [await node.run_manager.submit(submission) for submission in submissions]
    return web.json_response({"runs": [_with_links(record) for record in runs]}, status=202)


async def bound_submission(
    request: web.Request,
    user: User,
    recipe: Recipe,
    recipe_entry: ContentEntry,
    *,
    inputs: Any,
    output_name: str,
    priority: int = 0,
    callback: str = "",
) -> Submission:
    """The submission of ``recipe`` on ``inputs``, its media checked (nothing written yet):
    ``POST /runs``, each item of ``POST /runs/batch``, ``POST /recipes/{id}/run``."""
    node = request.app[NODE]
    return await bind(
        node.store,
        recipe,
        recipe_entry,
        inputs=inputs,
        owner=user.name,
        output_name=output_name,
        cache=node.cache,
        priority=priority,
        callback=callback,
        limits=limits_of(request, user),
    )


async def _recipe_of(request: web.Request, user: User, body: dict[str, Any]) -> tuple[Recipe, ContentEntry]:
    """The recipe a run request names (a built-in effect with ``params``, or an uploaded
    recipe's name, id or CID) and the entry of its bytes."""
    recipe_ref = body.get("recipe")
    if not isinstance(recipe_ref, str) or not recipe_ref:
        raise InvalidInput("recipe is required: a built-in effect name, a recipe id or CID", field="recipe")
    if "params" in body and not isinstance(body["params"], dict):
        raise InvalidInput("params are an object: a built-in effect's parameters", field="params")
    node = request.app[NODE]
    named = await node.recipes.by_name(recipe_ref, user.name) if is_recipe_name(recipe_ref) else None
    return await resolve_recipe(node.store, named or recipe_ref, body.get("params"))


async def _callback_of(request: web.Request, body: dict[str, Any]) -> str:
    """The body's ``callback`` URL, checked against where this node may call (400 otherwise)."""
    if "callback" not in body:
        return ""
    return await checked_callback(body["callback"], request.app[NODE].settings.callback_hosts)


def checked_priority(request: web.Request, user: User, body: dict[str, Any]) -> int:
    """The body's ``priority``: an integer from -10 to 10 (default 0); above
    ARTDAG_PRIORITY_WITHOUT_ADMIN (0) only the admin may ask for it."""
    priority = body.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int) or not -10 <= priority <= 10:
        raise InvalidInput("priority is an integer from -10 to 10 (0 by default)", field="priority")
    ceiling = request.app[NODE].settings.priority_without_admin
    if priority > ceiling and not user.is_admin:
        raise Forbidden(
            f"a priority above {ceiling} needs the admin (ARTDAG_PRIORITY_WITHOUT_ADMIN)", field="priority"
        )
    return int(priority)


def checked_output_name(body: dict[str, Any], allowed: set[str]) -> str:
    """The body's ``output_name`` (or ""), after refusing fields outside ``allowed``."""
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidInput(f"unknown field {unknown[0]!r}", field=unknown[0])
    output_name = body.get("output_name", "")
    if "output_name" in body and (not isinstance(output_name, str) or not OUTPUT_NAME.fullmatch(output_name)):
        raise InvalidInput(
            "output_name is 1-128 characters without / \\ or control characters", field="output_name"
        )
    return str(output_name)


def run_response(record: RunRecord) -> web.Response:
    """202 with the queued run and where to follow it."""
    shown = _with_links(record)
    return web.json_response(shown, status=202, headers={"Location": shown["url"]})


def _with_links(record: RunRecord) -> dict[str, Any]:
    run_id = record["run_id"]
    return {**record, "url": f"/runs/{run_id}", "events": f"/runs/{run_id}/events"}


@operation(
    "Runs, newest first",
    "runs",
    {200: answer("A page of runs", ref("RunPage"))},
    errors=(400,),
    query=(
        *page(50, 500),
        query("status", {"enum": list(STATUSES)}, "only runs with this status"),
        query("owner", {"type": "string"}, "only runs of this user"),
    ),
)
async def listing(request: web.Request) -> web.Response:
    """``GET /runs?offset=&limit=&status=&owner=``: newest first."""
    offset = int_param(request, "offset", 0, 0, 10**6)
    limit = int_param(request, "limit", 50, 1, 500)
    status = request.query.get("status")
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(STATUSES)}", field="status")
    runs = await request.app[NODE].run_manager.listing(offset, limit, status, request.query.get("owner"))
    return web.json_response({"items": runs, "offset": offset, "limit": limit})


@operation(
    "A run: status, progress, each step's state and node, output, provenance",
    "runs",
    {200: answer("The run", ref("RunDetail"))},
)
async def detail(request: web.Request) -> web.Response:
    """``GET /runs/{run_id}``: the record, progress and each step's state and executing node."""
    run_id = request.match_info["run_id"]
    hot = request.app[HOT]
    body = hot.run(run_id)
    if body is None:
        node = request.app[NODE]
        shown = await node.run_manager.detail(run_id, node.identity.node_id)
        body = json.dumps(shown).encode()
        if is_final(shown["status"]):  # a finished run no longer changes
            hot.keep_run(run_id, body)
    return web.Response(body=body, content_type="application/json")


async def _owned(request: web.Request) -> tuple[User, RunRecord]:
    user = await require_user(request)
    record = await request.app[NODE].run_manager.get(request.match_info["run_id"])
    if not user.may_change(record["owner"]):
        raise Forbidden("only the run's owner or an admin may change it", run_id=record["run_id"])
    return user, record


@operation(
    "Try a failed or cancelled run again, as a new run: done steps reused, failed ones afresh",
    "runs",
    {202: answer("The new run, queued; follow it at url or events", ref("RunStarted"), RUN_LINKS)},
    errors=(403, 409, 413, 429),
    description=RUN_LIMITS,
    auth=True,
)
async def retry(request: web.Request) -> web.Response:
    """``POST /runs/{run_id}/retry``: a new run of the same recipe, inputs and output name,
    ``retry_of`` this one; 409 unless this one failed or was cancelled."""
    user, record = await _owned(request)
    limits = limits_of(request, user)
    return run_response(await request.app[NODE].run_manager.retry(record["run_id"], limits))


@operation(
    "Stop a run; its running steps' workers are killed",
    "runs",
    {200: answer("The run as it is now", ref("Run"))},
    errors=(403, 409),
    auth=True,
)
async def cancel(request: web.Request) -> web.Response:
    """``POST /runs/{run_id}/cancel``: stop it (its running steps' workers are killed)."""
    _, record = await _owned(request)
    return web.json_response(await request.app[NODE].run_manager.cancel(record["run_id"]))


@operation(
    "Delete a finished run; what it held that nothing else keeps is unpinned",
    "runs",
    {200: answer("Forgotten", ref("Deleted"))},
    errors=(403, 409),
    auth=True,
)
async def delete(request: web.Request) -> web.Response:
    """``DELETE /runs/{run_id}``: delete a finished run as the deletion rules allow; what it
    held that nothing else keeps is unpinned."""
    user, record = await _owned(request)
    deleted = await request.app[NODE].deletion.delete_run(record, user)
    request.app[HOT].forget_run(record["run_id"])  # what it removed is gone (store/gone.py)
    return web.json_response({"deleted": deleted.run_id, "removed": [entry.cid for entry in deleted.removed]})


@operation(
    "The run's events as Server-Sent Events, from the start or after Last-Event-ID",
    "runs",
    {
        200: {
            "description": "Events until the run's final one",
            "content": {"text/event-stream": {"schema": ref("RunEvent")}},  # each event
        }
    },
    errors=(400,),
    headers=(
        {
            "name": "Last-Event-ID",
            "in": "header",
            "required": False,
            "schema": {"type": "string", "pattern": "^[0-9]{1,20}-[0-9]{1,20}$"},
        },
    ),
)
async def events(request: web.Request) -> web.StreamResponse:
    """``GET /runs/{run_id}/events``: Server-Sent Events from the run's stream, from the start or
    after ``Last-Event-ID``; ends after the run's final event."""
    run_id = request.match_info["run_id"]
    await request.app[NODE].run_manager.get(run_id)  # 404 before the stream starts
    run_events = request.app[NODE].runs.events
    after = _last_event_id(request.headers.get("Last-Event-ID"))
    async with sse_response(request) as stream:
        try:
            while stream.is_connected():
                batch = await run_events.read(run_id, after, block_ms=EVENT_WAIT_MS)
                for event_id, event in batch:
                    await stream.send(json.dumps(event), id=event_id, event=event["kind"])
                    after = event_id
                    if event["kind"] in FINAL_EVENTS:
                        return stream
                if not batch and is_final((await request.app[NODE].run_manager.get(run_id))["status"]):
                    return stream  # its final event was sent before Last-Event-ID
        except NodeError as exc:  # Redis gone, run deleted: the status line is out, so end the stream
            log.warning("event stream of %s ended: %s", run_id, exc.message)
        except ConnectionResetError:  # the follower left (Ctrl-C, a closed page): nothing to answer
            log.info("event stream of %s: the client left", run_id)
    return stream


def _last_event_id(value: str | None) -> str:
    """Where the stream resumes: after ``value`` (an event id), or from the start ("-")."""
    if value is None:
        return "-"
    match = re.fullmatch(r"([0-9]{1,20})-([0-9]{1,20})", value)
    if match is None or any(int(part) >= MAX_STREAM_ID_PART for part in match.groups()):
        raise InvalidInput("Last-Event-ID must be an event id this stream sent", field="Last-Event-ID")
    return value


@operation(
    "The signed provenance record of a completed run",
    "runs",
    {200: answer("The record", ref("SignedRecord"), RECORD_LINKS)},
    errors=(409, 502),
)
async def provenance(request: web.Request) -> web.Response:
    """``GET /runs/{run_id}/provenance``: the signed record of a completed run."""
    record = await request.app[NODE].run_manager.get(request.match_info["run_id"])
    provenance_cid = record["provenance_cid"]
    if not provenance_cid:
        raise Conflict(
            f"run is {record['status']}: provenance exists once it completes", run_id=record["run_id"]
        )
    return web.json_response(await fetch_record(request.app, provenance_cid))


async def fetch_record(app: web.Application, cid: str) -> dict[str, Any]:
    """A signed record this node holds, checked, with its CID."""
    entry = await app[NODE].store.resolve(cid)
    if entry.size > RECORD_MAX_BYTES:
        raise InvalidInput(f"{cid} is too large to be a record", field="cid")
    data = await app[NODE].store.read_all(entry, RECORD_MAX_BYTES)
    return {"cid": entry.cid, "record": verify_record(data)}
