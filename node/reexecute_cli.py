"""``artdag-node verify --reexecute CID``: ask the node running on this data directory to re-execute
a provenance record (``POST /provenance/{cid}/reexecute``), follow it, print each step's verdict.

The node is reached at ``http://ARTDAG_HOST:ARTDAG_PORT`` (127.0.0.1 if it listens on every
address) with ``ARTDAG_TOKEN``, else the admin token in its data directory (local mode). Exits 0
when every step is reproduced, 1 when one is not (or the re-execution failed), 2 when it could
not be started.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import aiohttp

from node.config import Settings

POLL_S = 0.5  # between two looks at the job: a person is waiting, not a test
ANY_ADDRESS = ("0.0.0.0", "::", "")  # noqa: S104 - where the node listens, not where we bind


def node_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.host in ANY_ADDRESS else settings.host
    return f"http://{f'[{host}]' if ':' in host else host}:{settings.port}"


def _token(settings: Settings) -> str:
    given = os.environ.get("ARTDAG_TOKEN", "")
    if given:
        return given
    try:
        return (settings.data_dir / "admin_token").read_text(encoding="utf-8").strip()
    except OSError:
        return ""


async def reexecute_command(settings: Settings, cid: str, as_json: bool) -> int:
    url, token = node_url(settings), _token(settings)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with aiohttp.ClientSession(url, headers=headers) as session:
            async with session.post(f"/provenance/{cid}/reexecute") as asked:
                body = await asked.json(content_type=None)
                if asked.status != 202:
                    message = (body or {}).get("error", {}).get("message", asked.reason)
                    print(f"artdag-node verify --reexecute: {asked.status}: {message}", file=sys.stderr)
                    return 2
            job = await _followed(session, asked.headers["Location"])
    except (aiohttp.ClientError, ValueError, KeyError) as exc:
        print(f"artdag-node verify --reexecute: no node answered at {url} ({exc!r}): start it, or set "
              "ARTDAG_HOST and ARTDAG_PORT to where it listens", file=sys.stderr)  # fmt: skip
        return 2
    print(json.dumps(job, indent=2) if as_json else _as_text(job))
    reproduced = job["state"] == "done" and job["summary"].get("reproduced") == job["progress"]["total"]
    return 0 if reproduced else 1


async def _followed(session: aiohttp.ClientSession, location: str) -> dict[str, Any]:
    shown = -1
    while True:
        async with session.get(location) as answer:
            job: dict[str, Any] = await answer.json()
        done, total = job["progress"]["done"], job["progress"]["total"]
        if done != shown:
            print(f"re-executing {job['provenance']}: {done}/{total} steps", file=sys.stderr)
            shown = done
        if job["state"] != "running":
            return job
        await asyncio.sleep(POLL_S)


def _as_text(job: dict[str, Any]) -> str:
    if job["state"] == "failed":
        return f"FAILED: re-execution of {job['provenance']}: {job.get('error', '')}"
    counts = ", ".join(f"{count} {verdict}" for verdict, count in job["summary"].items())
    lines = [f"RE-EXECUTED {job['provenance']}: {counts}; record {job['record_cid']}"]
    for step in job["steps"]:
        reason = f" ({step['reason']})" if step.get("reason") else ""
        lines.append(f"  {step['verdict']:<21} {step['step']} [{step['type']}]{reason}")
    return "\n".join(lines)
