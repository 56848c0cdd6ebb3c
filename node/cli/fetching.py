"""``artdag fetch``: content by CID, straight from an IPFS daemon when ``ARTDAG_IPFS_API`` names
one (ipfshttpclient), else through the node."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, BinaryIO

import ipfshttpclient

from node.cli.client import Api, CliError

URL = re.compile(r"(https?)://(\[[^\]]+\]|[^:/]+):(\d+)/?")


def fetch(api: Api, cid: str, output: Path | None, ipfs_api: str | None) -> dict[str, Any]:
    """Write content ``cid`` to ``output`` (or standard output); where from and how many bytes."""
    out: BinaryIO = output.open("wb") if output else sys.stdout.buffer
    try:
        if ipfs_api:
            written = _from_daemon(ipfs_api, cid, out)
            source = ipfs_api
        else:
            written = api.download(cid, out)
            source = api.url
    finally:
        if output:
            out.close()
    return {"cid": cid, "source": source, "written": written, **({"saved_to": str(output)} if output else {})}


def multiaddr(address: str) -> str:
    """ipfshttpclient takes multiaddrs: http://127.0.0.1:5001 -> /ip4/127.0.0.1/tcp/5001/http."""
    if address.startswith("/"):
        return address
    found = URL.fullmatch(address)
    if found is None:
        raise CliError(f"ARTDAG_IPFS_API must be http://HOST:PORT or a multiaddr, got {address!r}")
    scheme, host, port = found.groups()
    kind = "ip6" if host.startswith("[") else "ip4" if re.fullmatch(r"[\d.]+", host) else "dns"
    return f"/{kind}/{host.strip('[]')}/tcp/{port}/{scheme}"


def _from_daemon(address: str, cid: str, out: BinaryIO) -> int:
    written = 0
    try:
        with ipfshttpclient.Client(multiaddr(address)) as client:
            for chunk in client.cat(cid, stream=True):
                out.write(chunk)
                written += len(chunk)
    except ipfshttpclient.exceptions.Error as exc:
        raise CliError(f"IPFS daemon at {address}: {exc}") from None
    return written
