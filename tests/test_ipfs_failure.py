"""The IPFS daemon dying under the node: a download in flight is cut short, never faked."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import AsyncIterator

import aiohttp
import pytest

from node.config import Settings
from node.services import EmbeddedServices
from tests.helpers import NodeClient

SIZE = 64 * 1024 * 1024


async def test_daemon_death_mid_download_cuts_the_body(
    own_ipfs: EmbeddedServices,
    settings: Settings,
    node_client: NodeClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The client gets a short body (a payload error), not a 200 that ends in an error document."""
    caplog.set_level(logging.INFO, logger="node.http.cache")
    client = await node_client(settings.replace(ipfs_api=own_ipfs.settings.ipfs_api))
    headers = {"Authorization": f"Bearer {(settings.data_dir / 'admin_token').read_text().strip()}"}
    block = os.urandom(1024 * 1024)

    async def body() -> AsyncIterator[bytes]:
        for index in range(SIZE // len(block)):
            yield index.to_bytes(8, "big") + block[8:]

    form = aiohttp.FormData()
    form.add_field("file", body(), filename="big.bin")
    stored = await (await client.post("/cache/upload", data=form, headers=headers)).json()

    received = 0
    with pytest.raises(aiohttp.ClientPayloadError):
        async with client.get(f"/cache/{stored['cid']}") as response:
            assert response.status == 200
            first = await response.content.readexactly(1024 * 1024)
            received += len(first)
            pid = own_ipfs.processes["ipfs"].pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            async for chunk in response.content.iter_chunked(1024 * 1024):
                received += len(chunk)
    assert received < SIZE
    assert any("broke off" in record.getMessage() for record in caplog.records)
