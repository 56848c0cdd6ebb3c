"""``artdag``: render, upload, follow and fetch from an Art DAG node on the command line.

The node is ``ARTDAG_URL`` (default http://127.0.0.1:8100) and the token ``ARTDAG_TOKEN``.
Every command prints what a person wants to read, or the node's JSON with ``--json``; any
failure is one line on stderr and exit status 1 (2 for a wrong command line).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from node.cli.client import DEFAULT_URL, Api, CliError
from node.cli.fetching import fetch
from node.cli.params import describe_effect
from node.cli.rendering import render

Command = Callable[[Api, argparse.Namespace], Any]
ENVIRONMENT = """environment:
  ARTDAG_URL      the node (default http://127.0.0.1:8100)
  ARTDAG_TOKEN    a token for uploads and runs (local mode: the node's admin_token file,
                  ~/.artdag/admin_token by default); reading needs none
  ARTDAG_IPFS_API an IPFS daemon for `fetch` to read from directly (optional)"""
TRUST_RULE = (
    "pass --trust NODE_ID (repeatable) for the nodes you trust, or --any-signer to check integrity "
    "only: anyone can make a key and sign a record"
)


def _upload(api: Api, args: argparse.Namespace) -> Any:
    path = Path(args.file)
    if not path.is_file():
        raise CliError(f"{path}: no such file")
    return api.upload(path, args.name)


def _runs(api: Api, args: argparse.Namespace) -> Any:
    params = {"limit": args.limit, **({"status": args.status} if args.status else {})}
    return api.call("GET", "/runs", params=params)


def _status(api: Api, args: argparse.Namespace) -> Any:
    return api.call("GET", f"/runs/{args.run}")


def _cancel(api: Api, args: argparse.Namespace) -> Any:
    return api.call("POST", f"/runs/{args.run}/cancel")


def _retry(api: Api, args: argparse.Namespace) -> Any:
    return api.call("POST", f"/runs/{args.run}/retry")


def _verify(api: Api, args: argparse.Namespace) -> Any:
    if not args.trust and not args.any_signer:  # the rule of artdag-node verify too
        raise UsageError(TRUST_RULE)
    return api.call("GET", f"/provenance/{args.cid}/verify", params=[("trust", node) for node in args.trust])


def _recipes(api: Api, args: argparse.Namespace) -> Any:
    return api.call("GET", "/recipes")


def _effects(api: Api, args: argparse.Namespace) -> Any:
    return api.call("GET", "/effects")


class UsageError(CliError):
    """A command line that cannot be carried out as given (exit status 2)."""


def _fetch(api: Api, args: argparse.Namespace) -> Any:
    return fetch(api, args.cid, Path(args.output) if args.output else None, os.environ.get("ARTDAG_IPFS_API"))


COMMANDS: dict[str, Command] = {
    "render": render,
    "upload": _upload,
    "runs": _runs,
    "status": _status,
    "cancel": _cancel,
    "retry": _retry,
    "fetch": _fetch,
    "verify": _verify,
    "recipes": _recipes,
    "effects": _effects,
}


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="artdag",
        description="Use an Art DAG node from the command line.",
        epilog=ENVIRONMENT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    root.add_argument("--json", action="store_true", help="print the node's JSON answers")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    render_ = commands.add_parser("render", help="render an effect or recipe on inputs")
    render_.add_argument("recipe", help="an effect name, a recipe id or CID, or a recipe YAML file")
    render_.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="a file (uploaded first), CID, SHA3 hex or asset name"
    )
    render_.add_argument(
        "--sync", action="store_true", help="follow the run with a progress bar and download the output"
    )
    render_.add_argument("-o", "--output", help="where --sync writes the output (default: its output name)")
    render_.add_argument("--name", default="", help="the run's output name")
    render_.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a built-in effect's parameter (repeatable; `artdag effects` lists them), e.g. --param sigma=5",
    )
    upload = commands.add_parser("upload", help="store a file on the node")
    upload.add_argument("file")
    upload.add_argument("--name", default="", help="make it an asset with this name")
    runs = commands.add_parser("runs", help="list runs, newest first")
    runs.add_argument("--status", choices=("queued", "running", "completed", "failed", "cancelled"))
    runs.add_argument("--limit", type=int, default=20)
    runs_by_id = (
        ("status", "show a run"),
        ("cancel", "stop a run"),
        ("retry", "try a failed or cancelled run again (a new run; the steps done are reused)"),
    )
    for name, text in runs_by_id:
        commands.add_parser(name, help=text).add_argument("run", metavar="RUN")
    fetch_ = commands.add_parser("fetch", help="download content (from ARTDAG_IPFS_API if set)")
    fetch_.add_argument("cid", metavar="CID")
    fetch_.add_argument("-o", "--output", help="file to write (default: standard output)")
    verify = commands.add_parser("verify", help="verify a provenance record")
    verify.add_argument("cid", metavar="CID")
    verify.add_argument(
        "--trust", action="append", default=[], metavar="NODE_ID", help="a node id to trust (repeatable)"
    )
    verify.add_argument(
        "--any-signer",
        action="store_true",
        help="check integrity only: whoever signed it, if the signatures hold",
    )
    commands.add_parser("recipes", help="list uploaded recipes")
    commands.add_parser("effects", help="list effects and their parameters")
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        result = run(args)
    except UsageError as exc:
        print(f"artdag: {exc}", file=sys.stderr)
        return 2
    except CliError as exc:
        print(f"artdag: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader of our output went away (| head): nothing to say
        sys.stderr.close()
        return 1
    except OSError as exc:
        print(f"artdag: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("artdag: interrupted", file=sys.stderr)
        return 130
    to_stderr = args.command == "fetch" and not args.output  # stdout holds the content
    text = json.dumps(result, indent=2) if args.json else describe(args.command, result)
    print(text, file=sys.stderr if to_stderr else sys.stdout)
    return 0 if not (args.command == "verify" and not result.get("ok")) else 1


def run(args: argparse.Namespace) -> Any:
    """Carry out the command; its result."""
    api = Api(os.environ.get("ARTDAG_URL", DEFAULT_URL), os.environ.get("ARTDAG_TOKEN"))
    try:
        return COMMANDS[args.command](api, args)
    finally:
        api.close()


def describe(command: str, result: Any) -> str:
    """What a person reads for a command's result."""
    return TEXT.get(command, json.dumps)(result)


def _verdict(result: dict[str, Any]) -> str:
    verdict = "verified" if result["ok"] else "NOT verified"
    return "\n".join([f"{verdict}: {result['cid']} signed by {result.get('signer')}", *result["problems"]])


def _listing(line: Callable[[dict[str, Any]], str], empty: str) -> Callable[[dict[str, Any]], str]:
    return lambda result: "\n".join(line(item) for item in result["items"]) or empty


def _run_line(run: dict[str, Any]) -> str:
    """A run in ``artdag runs``: id, status, progress, how long it took (so far), recipe, when."""
    progress, took = f"{run.get('progress', 0):>3}%", _seconds(run.get("duration_s"))
    recipe = run["recipe"]["name"]
    return f"{run['run_id']}  {run['status']:<9} {progress} {took:>10}  {recipe:<20} {run['created']}"


def _step_line(name: str, step: dict[str, Any]) -> str:
    """One step of ``artdag status``: name, type, state, how long it ran, its parameters."""
    params = (step.get("config") or {}).get("params") or {}
    settings = " ".join(f"{key}={value}" for key, value in params.items())
    covers = f" (covers {', '.join(step['fused'])})" if step.get("fused") else ""
    ran = _seconds(step.get("running_s"))
    return f"  {name:<16} {step.get('type', ''):<8} {step['state']:<8} {ran:>8}  {settings}{covers}".rstrip()


def _seconds(span: float | None) -> str:
    if span is None:
        return ""
    return f"{span:.1f} s" if span < 60 else f"{int(span // 60)} min {int(span % 60):02d} s"


def _recipe_line(item: dict[str, Any]) -> str:
    """An uploaded recipe: id, name and version, when and by whom (uploads of one name differ
    by these; a run by name takes the newest of yours)."""
    created = datetime.fromtimestamp(float(item.get("created") or 0), UTC).strftime("%Y-%m-%d %H:%M:%S")
    name = f"{item.get('name', '')} v{item.get('version', '')}"
    return f"{item['id']}  {name:<24} {created} UTC  {item.get('owner', '')}"


def _run_text(run: dict[str, Any]) -> str:
    lines = [f"{run['run_id']}  {run['status']}  {run['recipe']['name']}"]
    if run.get("progress") is not None:
        lines.append(f"progress: {run['progress']}%")
    if run.get("duration_s") is not None:
        ran = f", ran {_seconds(run['running_s'])}" if run.get("running_s") is not None else ""
        lines.append(
            f"time: queued {_seconds(run.get('queued_s'))}{ran}, {_seconds(run['duration_s'])} in all"
        )
    for name, step in (run.get("steps") or {}).items():
        lines.append(_step_line(name, step))
    if run.get("output"):
        lines.append(f"output: {run['output']['cid']} ({run['output']['media_type']})")
    if run.get("saved_to"):
        lines.append(f"saved to: {run['saved_to']}")
    if run.get("error"):
        lines.append(f"error: {run['error']}")
    return "\n".join(lines)


TEXT: dict[str, Callable[[Any], str]] = {
    "runs": _listing(_run_line, "no runs"),
    "status": _run_text,
    "cancel": _run_text,
    "retry": _run_text,
    "render": _run_text,
    "upload": lambda entry: f"{entry['cid']}  {entry['size']} bytes  {entry['media_type']}",
    "verify": _verdict,
    "recipes": _listing(_recipe_line, "no recipes"),
    "effects": _listing(describe_effect, "no effects"),
    "fetch": lambda result: f"{result['written']} bytes from {result['source']}",
}


if __name__ == "__main__":
    sys.exit(main())
