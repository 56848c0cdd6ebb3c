"""POST /cache/upload, GET/HEAD /cache/{ref} and GET /cache against real Redis and IPFS."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multiformats import CID

from node.config import Settings
from node.http.appkeys import NODE
from node.store.ipfs import IpfsClient
from tests.helpers import CHUNKED_FORM_TYPE, Client, NodeClient, chunked_form, closed_port

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def files_under(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


def png_bytes(size: int = 5000) -> bytes:
    return PNG_MAGIC + os.urandom(size - len(PNG_MAGIC))


def form(data: bytes, name: str | None = None, name_after: bool = False) -> aiohttp.FormData:
    body = aiohttp.FormData()
    if name is not None and not name_after:
        body.add_field("name", name)
    body.add_field("file", data, filename="upload.bin", content_type="application/octet-stream")
    if name is not None and name_after:
        body.add_field("name", name)
    return body


async def upload(client: Client, auth: dict[str, str], data: bytes, **kwargs: Any) -> aiohttp.ClientResponse:
    return await client.post("/cache/upload", data=form(data, **kwargs), headers=auth)


@pytest.fixture
async def ipfs(settings: Settings) -> AsyncIterator[IpfsClient]:
    assert settings.ipfs_api is not None
    async with aiohttp.ClientSession() as session:
        yield IpfsClient(settings.ipfs_api, session)


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_upload_streams_into_ipfs_pins_and_indexes(
    client: Client, auth: dict[str, str], ipfs: IpfsClient
) -> None:
    """An upload answers 201 with cid, content id (SHA3-256), size and sniffed media type;
    the CID is what the daemon gives the same bytes, and it is pinned."""
    data = png_bytes(700_000)
    response = await upload(client, auth, data)
    assert response.status == 201
    body = await response.json()
    assert body["content_id"] == body["sha3_256"] == hashlib.sha3_256(data).hexdigest()
    assert body["size"] == len(data)
    assert body["media_type"] == "image/png"
    assert body["cid"] == (await ipfs.add(_one(data))).cid
    assert response.headers["Location"] == f"/cache/{body['cid']}" == body["url"]
    assert await ipfs.pin_ls(body["cid"]) == {body["cid"]}
    listing = await (await client.get("/cache")).json()
    assert [item["content_id"] for item in listing["items"]] == [body["content_id"]]


async def test_same_bytes_twice_is_one_entry(client: Client, auth: dict[str, str]) -> None:
    """A second upload of the same bytes answers 200 with the same entry; the index holds one."""
    data = png_bytes()
    first = await (await upload(client, auth, data)).json()
    second_response = await upload(client, auth, data)
    assert second_response.status == 200
    assert await second_response.json() == first
    assert (await (await client.get("/cache")).json())["total"] == 1


async def test_concurrent_uploads_of_the_same_bytes(
    client: Client, auth: dict[str, str], ipfs: IpfsClient
) -> None:
    """Three simultaneous uploads of the same bytes give one entry, pinned, all answering it."""
    data = png_bytes(300_000)
    responses = await asyncio.gather(*(upload(client, auth, data) for _ in range(3)))
    bodies = [await response.json() for response in responses]
    assert sorted(response.status for response in responses) == [200, 200, 201]
    assert len({body["cid"] for body in bodies}) == 1
    assert (await (await client.get("/cache")).json())["total"] == 1
    assert await ipfs.pin_ls(bodies[0]["cid"]) == {bodies[0]["cid"]}


async def test_download_by_every_ref_form(client: Client, auth: dict[str, str]) -> None:
    """GET /cache/{ref} streams the bytes by CIDv1 base32, base58btc, CIDv0 and SHA3-256 hex."""
    data = png_bytes(600_000)  # several blocks: a dag-pb root, which has a CIDv0 (Qm…) form
    body = await (await upload(client, auth, data)).json()
    base58 = str(CID.decode(body["cid"]).encode("base58btc"))
    v0 = str(CID.decode(body["cid"]).set(version=0, base="base58btc"))
    assert v0.startswith("Qm")
    for ref in (body["cid"], base58, v0, body["content_id"], body["content_id"].upper()):
        response = await client.get(f"/cache/{ref}")
        assert response.status == 200, ref
        assert await response.read() == data
        assert response.headers["Content-Type"] == "image/png"
        assert response.headers["ETag"] == f'"{body["content_id"]}"'
        assert response.headers["Content-Length"] == str(len(data))
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "immutable" in response.headers["Cache-Control"]


async def test_head_has_headers_and_no_body(client: Client, auth: dict[str, str]) -> None:
    """HEAD answers the GET headers (length, type, ETag) without the bytes."""
    data = png_bytes()
    body = await (await upload(client, auth, data)).json()
    response = await client.head(f"/cache/{body['cid']}")
    assert response.status == 200
    assert response.headers["Content-Length"] == str(len(data))
    assert response.headers["Content-Type"] == "image/png"
    assert response.headers["ETag"] == f'"{body["content_id"]}"'
    assert response.headers["Accept-Ranges"] == "bytes"
    assert await response.read() == b""


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=10-19", 10, 20),
        ("bytes=262140-262150", 262140, 262151),
        ("bytes=-7", -7, None),
        ("bytes=299990-", 299990, None),
    ],
)
async def test_range_requests(
    client: Client, auth: dict[str, str], header: str, start: int, end: int | None
) -> None:
    """A single byte range answers 206 with exactly those bytes and a Content-Range."""
    data = png_bytes(300_000)
    body = await (await upload(client, auth, data)).json()
    response = await client.get(f"/cache/{body['cid']}", headers={"Range": header})
    assert response.status == 206
    expected = data[start:end]
    assert await response.read() == expected
    first = start % len(data)
    assert response.headers["Content-Range"] == f"bytes {first}-{first + len(expected) - 1}/{len(data)}"


async def test_unsatisfiable_range_is_416(client: Client, auth: dict[str, str]) -> None:
    """A range past the end answers 416 in the error shape with Content-Range: bytes */size."""
    data = png_bytes(1000)
    body = await (await upload(client, auth, data)).json()
    response = await client.get(f"/cache/{body['cid']}", headers={"Range": "bytes=5000-"})
    assert response.status == 416
    assert response.headers["Content-Range"] == "bytes */1000"
    assert (await response.json())["error"]["code"] == "range_not_satisfiable"


async def test_conditional_requests(client: Client, auth: dict[str, str]) -> None:
    """If-None-Match with the ETag (or *) is an empty 304 with the ETag; If-Range with the
    ETag honours the Range, with another ETag it sends the whole body."""
    data = png_bytes(1000)
    body = await (await upload(client, auth, data)).json()
    etag = f'"{body["content_id"]}"'
    url = f"/cache/{body['cid']}"
    for condition in (etag, f'"x", W/{etag}', "*"):
        not_modified = await client.get(url, headers={"If-None-Match": condition})
        assert not_modified.status == 304
        assert not_modified.headers["ETag"] == etag
        assert await not_modified.read() == b""
    assert (await client.get(url, headers={"If-None-Match": '"other"'})).status == 200
    partial = await client.get(url, headers={"Range": "bytes=0-9", "If-Range": etag})
    assert partial.status == 206
    assert await partial.read() == data[:10]
    full = await client.get(url, headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert full.status == 200
    assert await full.read() == data


@pytest.mark.parametrize(
    "header", ["bytes=0-1,5-9", "items=0-9", "bytes=9-2", "bytes=" + "9" * 5000 + "-", "bytes=-"]
)
async def test_ranges_we_do_not_serve_are_ignored(client: Client, auth: dict[str, str], header: str) -> None:
    """Multiple ranges, other units, reversed or absurdly long ranges: the whole body, 200."""
    data = png_bytes(1000)
    body = await (await upload(client, auth, data)).json()
    response = await client.get(f"/cache/{body['cid']}", headers={"Range": header})
    assert response.status == 200
    assert await response.read() == data


@pytest.mark.parametrize("ref", ["garbage", "Qm123", "ab" * 31, "bafy"])
async def test_malformed_ref_is_400_invalid_cid(client: Client, ref: str) -> None:
    """A ref that is neither a CID nor a SHA3-256 hex is 400 invalid_cid."""
    response = await client.get(f"/cache/{ref}")
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "invalid_cid"


@pytest.mark.parametrize("ref", ["QmY7Yh4UquoXHLPFo2XbhXkhBvFoPwmQUSa92pxnxjQuPU", "cd" * 32])
async def test_unknown_content_is_404(settings: Settings, node_client: NodeClient, ref: str) -> None:
    """Well-formed refs this node does not hold are 404 from the index alone: even with IPFS
    unreachable the answer is 404, so no request ever makes the daemon search the network."""
    no_ipfs = await node_client(settings.replace(ipfs_api=f"http://127.0.0.1:{closed_port()}"))
    response = await no_ipfs.get(f"/cache/{ref}")
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"


async def test_listing_paginates_newest_first(client: Client, auth: dict[str, str]) -> None:
    """GET /cache pages through the index, newest first, with the total."""
    ids = [(await (await upload(client, auth, png_bytes())).json())["content_id"] for _ in range(3)]
    page = await (await client.get("/cache?offset=1&limit=1")).json()
    assert page["total"] == 3 and page["offset"] == 1 and page["limit"] == 1
    assert [item["content_id"] for item in page["items"]] == [ids[1]]


@pytest.mark.parametrize("query", ["limit=0", "limit=5000", "offset=-1", "limit=ten"])
async def test_listing_rejects_bad_parameters(client: Client, query: str) -> None:
    """Bad offset/limit are 400 naming the parameter."""
    response = await client.get(f"/cache?{query}")
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["details"]["field"] == query.split("=", maxsplit=1)[0]


async def test_upload_needs_a_token(client: Client) -> None:
    """Anonymous and wrong-token uploads are 401 with WWW-Authenticate, and store nothing."""
    anonymous = await client.post("/cache/upload", data=form(png_bytes()))
    assert anonymous.status == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = await client.post(
        "/cache/upload", data=form(png_bytes()), headers={"Authorization": "Bearer nope"}
    )
    assert wrong.status == 401
    assert (await (await client.get("/cache")).json())["total"] == 0


async def test_undecodable_token_is_401(client: Client) -> None:
    """A token with bytes that are not ASCII is a 401 like any wrong token, never a 500."""
    assert client.server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    writer.write(
        b"POST /cache/upload HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer \xff\xfe\r\n"
        b"Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    await writer.wait_closed()
    assert status_line.startswith(b"HTTP/1.1 401")


async def test_asset_name_is_recorded(client: Client, auth: dict[str, str], settings: Settings) -> None:
    """A name (before or after the file) makes the upload an asset under that name."""
    first = await (await upload(client, auth, png_bytes(), name="cat")).json()
    second = await (await upload(client, auth, png_bytes(), name="dog", name_after=True)).json()
    assert first["name"] == "cat" and second["name"] == "dog"
    store = client.app[NODE].store
    assert await store.index.asset("cat") == first["content_id"]
    assert await store.index.asset("dog") == second["content_id"]


@pytest.mark.parametrize("name_after", [False, True])
async def test_the_same_bytes_under_the_same_name_are_200(
    client: Client, auth: dict[str, str], name_after: bool
) -> None:
    """Uploading again what a name already stands for is no conflict: 200, one entry, one CID."""
    data = png_bytes()
    first = await upload(client, auth, data, name="cat")
    assert first.status == 201
    again = await upload(client, auth, data, name="cat", name_after=name_after)
    assert again.status == 200, await again.text()
    assert (await again.json())["cid"] == (await first.json())["cid"] and (await again.json())[
        "name"
    ] == "cat"


@pytest.mark.parametrize("name_after", [False, True])
async def test_taken_asset_name_is_409_and_stores_nothing(
    client: Client, auth: dict[str, str], ipfs: IpfsClient, name_after: bool
) -> None:
    """Naming new bytes with a taken asset name is 409; the new bytes are neither pinned nor indexed."""
    await upload(client, auth, png_bytes(), name="cat")
    data = png_bytes()
    response = await upload(client, auth, data, name="cat", name_after=name_after)
    assert response.status == 409
    assert (await response.json())["error"]["code"] == "asset_exists"
    cid = (await ipfs.add(_one(data))).cid
    assert await ipfs.pin_ls(cid) == set()
    assert (await client.get(f"/cache/{cid}")).status == 404


@pytest.mark.parametrize(
    ("make_body", "message"),
    [
        (lambda: form(b""), "empty"),
        (lambda: form(png_bytes(), name="../etc/passwd"), "asset name"),
        (lambda: aiohttp.FormData({"other": "x"}, default_to_multipart=True), "unexpected form field"),
        (lambda: aiohttp.FormData({"name": "x"}, default_to_multipart=True), "no file"),
        (lambda: "not multipart", "multipart/form-data"),
    ],
)
async def test_bad_upload_bodies_are_400(
    client: Client, auth: dict[str, str], ipfs: IpfsClient, make_body: Any, message: str
) -> None:
    """Every malformed upload is a 400 invalid_upload saying what is wrong, and stores nothing."""
    pins_before = await ipfs.pin_ls()
    response = await client.post("/cache/upload", data=make_body(), headers=auth)
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == "invalid_upload"
    assert message in error["message"]
    assert (await (await client.get("/cache")).json())["total"] == 0
    assert await ipfs.pin_ls() == pins_before


@pytest.fixture
async def small_limit_client(settings: Settings, node_client: NodeClient) -> Client:
    return await node_client(settings.replace(max_upload=100_000))


async def test_too_large_is_413_by_content_length(small_limit_client: Client, settings: Settings) -> None:
    """A body whose Content-Length is over ARTDAG_MAX_UPLOAD is refused before it is read."""
    token = (settings.data_dir / "admin_token").read_text().strip()
    response = await small_limit_client.post(
        "/cache/upload", data=form(png_bytes(300_000)), headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status == 413
    assert (await response.json())["error"]["details"] == {"limit": 100_000}


async def test_too_large_is_413_when_streamed(
    small_limit_client: Client, settings: Settings, ipfs: IpfsClient
) -> None:
    """A chunked body (no Content-Length) is cut off at the limit: 413, nothing pinned or indexed."""
    token = (settings.data_dir / "admin_token").read_text().strip()
    pins_before = await ipfs.pin_ls()
    response = await small_limit_client.post(
        "/cache/upload",
        data=chunked_form(20),
        headers={"Authorization": f"Bearer {token}", "Content-Type": CHUNKED_FORM_TYPE},
    )
    assert response.status == 413
    assert await ipfs.pin_ls() == pins_before
    assert (await (await small_limit_client.get("/cache")).json())["total"] == 0


async def test_ipfs_down_is_503(
    settings: Settings, node_client: NodeClient, client: Client, auth: dict[str, str]
) -> None:
    """With the IPFS daemon unreachable, uploads and downloads answer 503 ipfs_unavailable."""
    body = await (await upload(client, auth, png_bytes())).json()
    down = await node_client(settings.replace(ipfs_api=f"http://127.0.0.1:{closed_port()}"))
    put = await down.post("/cache/upload", data=form(png_bytes()), headers=auth)
    assert put.status == 503
    assert (await put.json())["error"]["code"] == "ipfs_unavailable"
    get = await down.get(f"/cache/{body['cid']}")
    assert get.status == 503
    assert (await get.json())["error"]["code"] == "ipfs_unavailable"


async def test_redis_down_is_503(settings: Settings, node_client: NodeClient) -> None:
    """With Redis unreachable, uploads, downloads and listings answer 503 redis_unavailable."""
    down = await node_client(settings.replace(redis_url=f"redis://127.0.0.1:{closed_port()}/0"))
    token = (settings.data_dir / "admin_token").read_text().strip()
    responses = [
        await down.post(
            "/cache/upload", data=form(png_bytes()), headers={"Authorization": f"Bearer {token}"}
        ),
        await down.get(f"/cache/{'ab' * 32}"),
        await down.get("/cache"),
    ]
    for response in responses:
        assert response.status == 503
        assert (await response.json())["error"]["code"] == "redis_unavailable"
