"""Uploads through a real node process: bounded memory, and a client vanishing mid-upload.

The node runs as `python -m node` (on the session's daemons), as an operator runs it, so its
peak RSS can be read from /proc without this test's own buffers counting, and a client can
drop its connection the way a real one does.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from node.services import EmbeddedServices
from node.store.ipfs import IpfsClient
from node.testing import NodeProcess
from tests.helpers import wait_until_async

SIZE = 64 * 1024 * 1024
CHUNK = 1024 * 1024
MAX_GROWTH_KIB = 16 * 1024  # a quarter of the file: far below holding it in memory


@pytest.fixture
async def ipfs(daemons: EmbeddedServices) -> AsyncIterator[IpfsClient]:
    async with aiohttp.ClientSession() as session:
        yield IpfsClient(str(daemons.settings.ipfs_api), session)


@pytest.fixture
def node(daemons: EmbeddedServices, tmp_path: Path) -> Iterator[NodeProcess]:
    env = {
        "ARTDAG_REDIS_URL": str(daemons.settings.redis_url),
        "ARTDAG_IPFS_API": str(daemons.settings.ipfs_api),
        "ARTDAG_REDIS_PREFIX": f"mem-{os.urandom(4).hex()}:",
    }
    process = NodeProcess(tmp_path / "node", env)
    process.wait_healthy()
    yield process
    process.stop()


async def test_64mb_round_trip_in_bounded_memory(node: NodeProcess) -> None:
    """Uploading and downloading 64 MB grows the node's peak RSS by far less than 64 MB."""
    block = os.urandom(CHUNK)
    expected = hashlib.sha3_256()
    for index in range(SIZE // CHUNK):
        expected.update(index.to_bytes(8, "big") + block[8:])

    async def body() -> AsyncIterator[bytes]:
        for index in range(SIZE // CHUNK):
            yield index.to_bytes(8, "big") + block[8:]

    headers = {"Authorization": f"Bearer {node.token()}"}
    async with aiohttp.ClientSession(node.url) as session:
        warmup = aiohttp.FormData()
        warmup.add_field("file", b"warm up the upload path", filename="w")
        assert (await session.post("/cache/upload", data=warmup, headers=headers)).status == 201
        baseline_kib = node.memory_kib("VmRSS")
        node.reset_peak_memory()

        form = aiohttp.FormData()
        form.add_field("file", body(), filename="big.bin", content_type="application/octet-stream")
        async with session.post("/cache/upload", data=form, headers=headers) as response:
            assert response.status == 201
            stored = await response.json()
        assert stored["size"] == SIZE
        assert stored["content_id"] == expected.hexdigest()

        downloaded = hashlib.sha3_256()
        async with session.get(f"/cache/{stored['cid']}") as response:
            assert response.status == 200
            async for chunk in response.content.iter_chunked(CHUNK):
                downloaded.update(chunk)
        assert downloaded.hexdigest() == expected.hexdigest()

    growth_kib = node.memory_kib("VmHWM") - baseline_kib
    assert growth_kib < MAX_GROWTH_KIB, f"peak RSS grew by {growth_kib} KiB"


def files_under(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


async def test_client_disconnect_mid_upload_leaves_nothing(node: NodeProcess, ipfs: IpfsClient) -> None:
    """A client that drops the connection mid-upload leaves no pin, no index entry, no file."""
    pins_before = await ipfs.pin_ls()
    files_before = files_under(node.data_dir)
    _reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    head = (
        "POST /cache/upload HTTP/1.1\r\nHost: test\r\n"
        f"Authorization: Bearer {node.token()}\r\n"
        "Content-Type: multipart/form-data; boundary=B\r\nContent-Length: 50000000\r\n\r\n"
        '--B\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n\r\n'
    )
    writer.write(head.encode() + os.urandom(3_000_000))
    await writer.drain()
    writer.close()
    await writer.wait_closed()

    await wait_until_async(lambda: "upload incomplete" in node.log_path.read_text())
    assert await ipfs.pin_ls() == pins_before
    async with aiohttp.ClientSession(node.url) as session, session.get("/cache") as listing:
        assert (await listing.json())["total"] == 0
    assert files_under(node.data_dir) == files_before
