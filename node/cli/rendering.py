"""``artdag render``: upload what is local, start the run, and with ``--sync`` follow it on a
progress bar fed by the run's event stream, then download the output."""

from __future__ import annotations

import argparse
import json
import mimetypes
from pathlib import Path
from typing import Any

from tqdm import tqdm

from node.cli.client import Api, CliError

FINAL_EVENTS = {"run_completed", "run_failed", "run_cancelled"}


def render(api: Api, args: argparse.Namespace) -> dict[str, Any]:
    """Start a run of ``args.recipe`` on ``args.inputs``; with ``args.sync``, wait and download."""
    recipe = _recipe_ref(api, args.recipe)
    inputs = [_input_ref(api, given) for given in args.inputs]
    body: dict[str, Any] = {
        "recipe": recipe,
        "inputs": inputs,
        **({"output_name": args.name} if args.name else {}),
    }
    run: dict[str, Any] = api.call("POST", "/runs", json=body)
    if not args.sync:
        return run
    final = follow(api, run["run_id"], quiet=args.json)
    record: dict[str, Any] = api.call("GET", f"/runs/{run['run_id']}")
    if final != "run_completed":
        raise CliError(f"run {run['run_id']} {record['status']}: {record.get('error') or final}")
    target = Path(args.output) if args.output else _default_name(record)
    with target.open("wb") as out:
        api.download(record["output"]["cid"], out)
    return {**record, "saved_to": str(target)}


def follow(api: Api, run_id: str, *, quiet: bool = False) -> str:
    """Show the run's progress until its final event; that event's name."""
    with tqdm(total=100, desc=run_id, unit="%", disable=quiet, leave=True) as bar:
        for event in api.events(run_id):
            data = json.loads(event.data) if event.data else {}
            if event.event == "progress":
                bar.update(max(0, int(data.get("percent", 0)) - bar.n))
            elif event.event in ("step_started", "step_finished", "step_cached"):
                bar.set_postfix_str(f"{data.get('step', '')} {event.event.removeprefix('step_')}")
            elif event.event in FINAL_EVENTS:
                if event.event == "run_completed":
                    bar.update(100 - bar.n)
                return event.event
    raise CliError(f"the event stream of {run_id} ended before the run did")


def _recipe_ref(api: Api, given: str) -> str:
    """A recipe YAML file is uploaded first; anything else is a name, id or CID as it is."""
    path = Path(given)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise CliError(f"{path}: no such recipe file")
        return str(api.upload_recipe(path)["id"])
    return given


def _input_ref(api: Api, given: str) -> str:
    """A local file is uploaded first; anything else is a CID, SHA3 hex or asset name."""
    path = Path(given)
    if path.is_file():
        return str(api.upload(path)["cid"])
    return given


def _default_name(record: dict[str, Any]) -> Path:
    media_type = record["output"]["media_type"].split(";")[0]
    extension = mimetypes.guess_extension(media_type) or ""
    name = Path(record.get("output_name") or record["run_id"]).name
    return Path(name if name.endswith(extension) else name + extension)
