"""The Kubo RPC client against the real daemon: streaming add/cat, pins, keys, names, pubsub."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import aiohttp
import pytest
from multiformats import CID, multihash

from node.config import Settings
from node.store.cid import LEAF_MAX_BYTES, leaf_cid
from node.store.errors import ContentNotFound, IpfsError, IpfsTimeout, IpfsUnavailable
from node.store.ipfs import IpfsClient, PubsubMessage
from tests.helpers import closed_port


@pytest.fixture
async def ipfs(settings: Settings) -> AsyncIterator[IpfsClient]:
    assert settings.ipfs_api is not None
    async with aiohttp.ClientSession() as session:
        yield IpfsClient(settings.ipfs_api, session, timeout_s=20)


async def _chunks(data: bytes, size: int = 100_000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_add_then_cat_round_trips_with_fixed_import_settings(ipfs: IpfsClient) -> None:
    """Bytes streamed in come back identical, under a CIDv1 base32 raw-leaves CID."""
    data = os.urandom(3 * 262144 + 17)  # several chunks: a dag-pb root over raw leaves
    added = await ipfs.add(_chunks(data))
    assert added.cid.startswith("bafy")
    async with ipfs.cat(added.cid) as chunks:
        assert b"".join([chunk async for chunk in chunks]) == data
    small = await ipfs.add(_chunks(b"tiny"))
    assert small.cid.startswith("bafkrei")  # one raw leaf is its own root


async def test_same_bytes_same_cid_in_any_chunking(ipfs: IpfsClient) -> None:
    """The CID depends on the bytes only, not on how the client happened to chunk them."""
    data = os.urandom(600_000)
    first = await ipfs.add(_chunks(data, 1000))
    second = await ipfs.add(_chunks(data, 333_333))
    assert first.cid == second.cid


async def test_cat_with_offset_and_length(ipfs: IpfsClient) -> None:
    """cat honours offset and length, across block boundaries."""
    data = os.urandom(600_000)
    added = await ipfs.add(_chunks(data))
    async with ipfs.cat(added.cid, offset=262_000, length=5_000) as chunks:
        assert b"".join([chunk async for chunk in chunks]) == data[262_000:267_000]


async def test_add_is_unpinned_until_pinned(ipfs: IpfsClient) -> None:
    """add leaves content unpinned; pin_add/pin_rm/pin_ls track it; unpinning twice is harmless."""
    added = await ipfs.add(_chunks(os.urandom(1000)))
    assert await ipfs.pin_ls(added.cid) == set()
    await ipfs.pin_add(added.cid)
    assert await ipfs.pin_ls(added.cid) == {added.cid}
    assert added.cid in await ipfs.pin_ls()
    await ipfs.pin_rm(added.cid)
    await ipfs.pin_rm(added.cid)
    assert await ipfs.pin_ls(added.cid) == set()


async def test_keys_names_publish_and_resolve(ipfs: IpfsClient) -> None:
    """A generated key publishes a CID under its IPNS name, which resolves back to the CID."""
    key_name = f"test-{os.urandom(4).hex()}"
    ipns_name = await ipfs.key_gen(key_name)
    assert (await ipfs.key_ls())[key_name] == ipns_name
    added = await ipfs.add(_chunks(b"state document"), pin=True)
    assert await ipfs.name_publish(added.cid, key_name) == ipns_name
    assert await ipfs.name_resolve(ipns_name, timeout_s=10) == added.cid


async def test_the_daemon_says_at_once_whether_it_holds_a_record(ipfs: IpfsClient) -> None:
    """A key never published with has no record here; once published, it has."""
    key_name = f"test-{os.urandom(4).hex()}"
    ipns_name = await ipfs.key_gen(key_name)
    assert not await ipfs.holds_ipns_record(ipns_name)
    added = await ipfs.add(_chunks(b"first state"), pin=True)
    await ipfs.name_publish(added.cid, key_name)
    assert await ipfs.holds_ipns_record(ipns_name)


async def test_a_name_with_no_record_is_not_found_within_the_deadline(ipfs: IpfsClient) -> None:
    """Kubo would wait a minute for records; the node's deadline makes it answer "none"
    (ContentNotFound) before the call itself times out."""
    ipns_name = await ipfs.key_gen(f"test-{os.urandom(4).hex()}")
    with pytest.raises(ContentNotFound, match="could not resolve"):
        await ipfs.name_resolve(ipns_name, timeout_s=3)


async def test_pubsub_delivers_binary_messages(ipfs: IpfsClient) -> None:
    """A message published on a topic reaches a subscriber of that topic, bytes intact."""
    topic = f"artdag-test-{os.urandom(4).hex()}"
    payload = b"\x00state\xffcid"
    received: asyncio.Queue[PubsubMessage] = asyncio.Queue()

    async def subscribe() -> None:
        async for message in ipfs.pubsub_sub(topic):
            await received.put(message)

    task = asyncio.create_task(subscribe())
    try:
        peer_id = (await ipfs.id())["ID"]

        async def publish_until_received() -> PubsubMessage:
            while True:  # the subscription starts asynchronously: publish until it hears one
                await ipfs.pubsub_pub(topic, payload)
                try:
                    return await asyncio.wait_for(received.get(), 0.5)
                except TimeoutError:
                    continue

        message = await asyncio.wait_for(publish_until_received(), 20)
        assert message.data == payload
        assert message.sender == peer_id
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_unreachable_daemon_is_ipfs_unavailable() -> None:
    """No daemon at the address: IpfsUnavailable, not an aiohttp exception."""
    async with aiohttp.ClientSession() as session:
        client = IpfsClient(f"http://127.0.0.1:{closed_port()}", session, timeout_s=5)
        with pytest.raises(IpfsUnavailable, match="unavailable"):
            await client.id()


async def test_content_nobody_has_is_not_found_offline_and_times_out_online(settings: Settings) -> None:
    """cat of a CID the daemon lacks: offline (the default) answers ContentNotFound at once;
    allowed to ask peered daemons, it ends at the deadline with IpfsTimeout."""
    assert settings.ipfs_api is not None
    missing = str(CID("base32", 1, "raw", multihash.digest(os.urandom(16), "sha2-256")))
    async with aiohttp.ClientSession() as session:
        client = IpfsClient(settings.ipfs_api, session, timeout_s=1)
        with pytest.raises(ContentNotFound, match="not found locally"):
            async with client.cat(missing) as chunks:
                async for _chunk in chunks:
                    pass
        with pytest.raises(IpfsTimeout):
            async with client.cat(missing, offline=False) as chunks:
                async for _chunk in chunks:
                    pass


async def test_an_error_after_the_stream_began_ends_the_read_as_an_error(ipfs: IpfsClient) -> None:
    """Kubo reports a block missing halfway only in a trailer and ends the body cleanly: the
    read raises instead of ending short and looking complete."""
    data = os.urandom(LEAF_MAX_BYTES + 1000)  # two leaves
    added = await ipfs.add(_chunks(data))
    links = (await ipfs.call("ls", arg=added.cid))["Objects"][0]["Links"]
    await ipfs.call("block/rm", arg=links[1]["Hash"])  # unpinned: the daemon lets it go
    received = bytearray()
    with pytest.raises(IpfsError, match=f"ended after {LEAF_MAX_BYTES} of {len(data)} bytes"):
        async with ipfs.cat(added.cid) as chunks:
            async for chunk in chunks:
                received += chunk
    assert bytes(received) == data[:LEAF_MAX_BYTES]


@pytest.mark.parametrize("size", [1, 700, LEAF_MAX_BYTES])
async def test_leaf_cid_is_the_cid_the_daemon_gives(ipfs: IpfsClient, size: int) -> None:
    """Bytes that fit in one leaf get, computed locally, the CID ``add`` gives them."""
    data = os.urandom(size)
    assert leaf_cid(data) == (await ipfs.add(_chunks(data))).cid


def test_leaf_cid_refuses_what_is_not_one_leaf() -> None:
    for data in (b"", bytes(LEAF_MAX_BYTES + 1)):
        with pytest.raises(ValueError, match="not one leaf"):
            leaf_cid(data)


async def test_add_many_adds_each_item_in_order_pinned(ipfs: IpfsClient) -> None:
    """Several records in one call: one CID per item, in order (repeats included), each pinned."""
    records = [os.urandom(300), b"same", os.urandom(5000), b"same"]
    added = await ipfs.add_many(records, pin=True)
    assert [item.cid for item in added] == [leaf_cid(record) for record in records]
    for item in added:
        assert await ipfs.pin_ls(item.cid)
