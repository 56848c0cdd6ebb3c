"""``artdag-node verify CID``: check a provenance record from the command line.

Talks to an IPFS daemon: ``ARTDAG_IPFS_API``, or the embedded one of a node running on this
data directory (its ``services.json``). Prints a readable verdict (or ``--json``) and exits 0
when the record verifies, 1 when it does not, 2 when it could not be checked at all.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import aiohttp

from node.config import Settings
from node.errors import NodeError
from node.executor.provenance import Verdict, verify_provenance
from node.store.cid import normalize_cid
from node.store.ipfs import IpfsClient


def ipfs_api_for(settings: Settings) -> str | None:
    """The IPFS API to use: the configured one, else that of a node running on the data dir."""
    if settings.ipfs_api:
        return settings.ipfs_api
    try:
        state = json.loads((settings.data_dir / "services.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return str(state.get("ipfs", {}).get("url") or "") or None


def no_daemon_message(settings: Settings) -> str:
    """What to do when no IPFS daemon is known: the two ways to name the running node's."""
    return (
        f"artdag-node verify: no IPFS daemon found: no node runs on the data directory {settings.data_dir} "
        "(it has no services.json). Run this with the running node's data directory "
        "(ARTDAG_DATA_DIR=/its/data artdag-node verify ...), or name its IPFS API "
        "(ARTDAG_IPFS_API=http://127.0.0.1:PORT: the services.json in the node's data directory holds it)"
    )


async def verify_command(
    settings: Settings, cid: str, trusted: list[str], any_signer: bool, as_json: bool
) -> int:
    if not trusted and not any_signer:
        # Anyone can make a key and sign a record: without a trust list, VALID would mean little.
        print("artdag-node verify: pass --trust NODE_ID (repeatable) for the nodes you trust, or "
              "--any-signer to check integrity only: anyone can make a key and sign a record",
              file=sys.stderr)  # fmt: skip
        return 2
    api = ipfs_api_for(settings)
    if api is None:
        print(no_daemon_message(settings), file=sys.stderr)
        return 2
    try:
        cid = normalize_cid(cid)
        async with aiohttp.ClientSession() as session:
            verdict = await verify_provenance(
                IpfsClient(api, session, settings.ipfs_timeout), cid, set(trusted) or None
            )
    except NodeError as exc:
        print(f"artdag-node verify: {exc.message}", file=sys.stderr)
        return 2
    print(json.dumps(_as_json(verdict, any_signer), indent=2) if as_json else _as_text(verdict, any_signer))
    return 0 if verdict.ok else 1


def _as_json(verdict: Verdict, any_signer: bool) -> dict[str, Any]:
    return {"cid": verdict.cid, "ok": verdict.ok, "signer": verdict.signer, "signer_trusted": not any_signer,
            "problems": verdict.problems, "checked": verdict.checked}  # fmt: skip


def _as_text(verdict: Verdict, any_signer: bool) -> str:
    outcome = "VALID" if verdict.ok else "INVALID"
    trust = ", not checked against a trust list" if any_signer else ", a trusted node"
    head = f"{outcome}: provenance {verdict.cid} (signed by {verdict.signer or '?'}{trust})"
    lines = [
        head,
        *(f"  ok   {line}" for line in verdict.checked),
        *(f"  FAIL {line}" for line in verdict.problems),
    ]
    return "\n".join(lines)
