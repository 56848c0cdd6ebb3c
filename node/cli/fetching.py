"""``artdag fetch``: content by CID, straight from an IPFS daemon when ``ARTDAG_IPFS_API`` names
one (ipfshttpclient), else through the node."""

from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path
from typing import Any, BinaryIO

import ipfshttpclient

from node.cli.client import Api, CliError
from node.cli.files import written_whole

URL = re.compile(r"(https?)://(\[[^\]]+\]|[^:/]+):(\d+)/?")


def fetch(api: Api, cid: str, output: Path | None, ipfs_api: str | None) -> dict[str, Any]:
    """Write content ``cid`` to ``output`` (or standard output); where from and how many bytes."""
    source = ipfs_api or api.url
    if output is None:
        written = _copy(api, cid, ipfs_api, sys.stdout.buffer)
    else:
        with written_whole(output) as out:
            written = _copy(api, cid, ipfs_api, out)
    return {"cid": cid, "source": source, "written": written, **({"saved_to": str(output)} if output else {})}


def _copy(api: Api, cid: str, ipfs_api: str | None, out: BinaryIO) -> int:
    return _from_daemon(ipfs_api, cid, out) if ipfs_api else api.download(cid, out)


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
    with warnings.catch_warnings():
        # ipfshttpclient passes urllib3 an argument it deprecated: not the user's concern
        warnings.simplefilter("ignore", FutureWarning)
        try:
            with ipfshttpclient.Client(multiaddr(address)) as client:
                for chunk in client.cat(cid, stream=True):
                    out.write(chunk)
                    written += len(chunk)
        except ipfshttpclient.exceptions.Error as exc:
            raise CliError(f"IPFS daemon at {address}: {exc}") from None
    return written
