"""``/download/client``: how to install and use the ``artdag`` command-line client, and the
client itself as one file (a Python zip application built from this node's own code)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import zipfile
from pathlib import Path
from typing import Any

from aiohttp import web

from node.http.appkeys import NODE
from node.http.ui.templating import page

CLIENT_FILE = "artdag.pyz"
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the ``node`` package
# What the client imports beyond the standard library (see node/cli): installed with pip.
CLIENT_REQUIREMENTS = ("httpx", "httpx-sse", "tqdm", "ipfshttpclient")
_MAIN = "import sys\nfrom node.cli.main import main\nsys.exit(main())\n"


@page("client.html")
async def client_page(request: web.Request) -> dict[str, Any]:
    bundle = await _bundle(request.app)
    return {
        "file": CLIENT_FILE,
        "size": len(bundle),
        "sha256": hashlib.sha256(bundle).hexdigest(),
        "requirements": CLIENT_REQUIREMENTS,
        "public_url": request.app[NODE].settings.public_url,
    }


async def download(request: web.Request) -> web.Response:
    """The client as a zip application: ``python3 artdag.pyz --help``."""
    bundle = await _bundle(request.app)
    etag = f'"{hashlib.sha256(bundle).hexdigest()[:32]}"'
    headers = {
        "Content-Disposition": f'attachment; filename="{CLIENT_FILE}"',
        "ETag": etag,
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
    }
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=bundle, content_type="application/zip", headers=headers)


download.__ui_page__ = True  # type: ignore[attr-defined]


class ClientBundle:
    """The client's bytes, built once per process, in a thread (it reads and compresses files)."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._bytes: bytes | None = None

    async def get(self) -> bytes:
        async with self._lock:
            if self._bytes is None:
                self._bytes = await asyncio.to_thread(build_bundle)
            return self._bytes


_BUNDLE = web.AppKey("client_bundle", ClientBundle)


def setup(app: web.Application) -> None:
    app[_BUNDLE] = ClientBundle()


async def _bundle(app: web.Application) -> bytes:
    return await app[_BUNDLE].get()


def build_bundle() -> bytes:
    """A zip application of ``node/__init__.py`` and ``node/cli``: all the client needs besides
    the packages of ``CLIENT_REQUIREMENTS``. Stable bytes for the same code (fixed times)."""
    sources = [PACKAGE_ROOT / "__init__.py", *sorted((PACKAGE_ROOT / "cli").glob("*.py"))]
    buffer = io.BytesIO()
    buffer.write(b"#!/usr/bin/env python3\n")  # before the archive: zip offsets allow for it
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr(_entry("__main__.py"), _MAIN)
        for source in sources:
            bundle.writestr(
                _entry(f"node/{source.relative_to(PACKAGE_ROOT).as_posix()}"), source.read_bytes()
            )
    return buffer.getvalue()


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info
