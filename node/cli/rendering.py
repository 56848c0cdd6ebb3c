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
from node.cli.files import EXTENSIONS, written_whole
from node.cli.params import effect_params

FINAL_EVENTS = {"run_completed", "run_failed", "run_cancelled"}
RECONNECTS = 3


def render(api: Api, args: argparse.Namespace) -> dict[str, Any]:
    """Start a run of ``args.recipe`` on ``args.inputs``; with ``args.sync``, wait and download."""
    params = effect_params(api, args.recipe, args.param)
    recipe = _recipe_ref(api, args.recipe)
    inputs = [_input_ref(api, given) for given in args.inputs]
    body: dict[str, Any] = {
        "recipe": recipe,
        "inputs": inputs,
        **({"params": params} if params else {}),
        **({"output_name": args.name} if args.name else {}),
    }
    try:
        run: dict[str, Any] = api.call("POST", "/runs", json=body)
    except CliError as exc:
        raise _missing_file(exc, args.inputs) or exc from None
    if not args.sync:
        return run
    final = follow(api, run["run_id"], quiet=args.json)
    record: dict[str, Any] = api.call("GET", f"/runs/{run['run_id']}")
    if final != "run_completed":
        raise CliError(f"run {run['run_id']} {record['status']}: {record.get('error') or final}")
    target = Path(args.output) if args.output else _default_name(record)
    if not args.output and target.exists():
        raise CliError(f"{target} exists; name the output file with -o")
    with written_whole(target) as out:
        api.download(record["output"]["cid"], out)
    return {**record, "saved_to": str(target)}


def follow(api: Api, run_id: str, *, quiet: bool = False) -> str:
    """Show the run's progress until its final event; that event's name. A stream that ends
    early (the node restarted, a proxy timed out) is picked up again after its last event."""
    last_id = ""
    with tqdm(total=100, desc=run_id, unit="%", disable=quiet, leave=True) as bar:
        for _ in range(RECONNECTS + 1):
            for event in api.events(run_id, after=last_id):
                last_id = event.id or last_id
                final = _show(bar, event.event, json.loads(event.data) if event.data else {})
                if final:
                    return event.event
    raise CliError(f"the event stream of {run_id} keeps ending before the run does")


def _show(bar: tqdm[Any], kind: str, data: dict[str, Any]) -> bool:
    """Show one event on the bar; whether it was the run's final one."""
    if kind == "progress":
        bar.update(max(0, int(data.get("percent", 0)) - bar.n))
    elif kind == "step_progress":  # inside a long step: its frames and the time it has left
        eta = f", {data['eta_s']:.0f} s left" if data.get("eta_s") is not None else ""
        frames = f" {data['frames']}/{data['total_frames']} frames" if "total_frames" in data else ""
        bar.set_postfix_str(f"{data.get('step', '')}{frames}{eta}")
    elif kind in ("step_started", "step_finished", "step_cached"):
        bar.set_postfix_str(f"{data.get('step', '')} {kind.removeprefix('step_')}")
    elif kind == "run_completed":
        bar.update(100 - bar.n)
    return kind in FINAL_EVENTS


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


def _missing_file(refused: CliError, given: list[str]) -> CliError | None:
    """A missing input that was meant as a local file (it has a folder or an extension) is
    "file not found", rather than the node's "no content or asset"."""
    if refused.status != 404 or not (refused.field or "").startswith("inputs"):
        return None
    for ref in given:
        path = Path(ref)
        if not path.exists() and (path.suffix or "/" in ref):
            return CliError(f"{ref}: file not found (and the node has no content or asset of that name)")
    return None


def _default_name(record: dict[str, Any]) -> Path:
    """The output's name in this folder: its output name (never a path), with the extension of
    its media type; the run id where the name would be empty or hidden."""
    media_type = record["output"]["media_type"].split(";")[0].strip()
    extension = EXTENSIONS.get(media_type) or mimetypes.guess_extension(media_type) or ""
    name = Path(str(record.get("output_name") or "")).name
    if not name or name.startswith("."):
        name = record["run_id"]
    return Path(name if name.endswith(extension) else name + extension)
