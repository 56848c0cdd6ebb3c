"""DELETE /cache/{ref} (ownership, the run guard, unpinning) and POST /cache/import (roots)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from node.config import Settings
from node.pixels.imaging import png_bytes
from node.store.ipfs import IpfsClient
from tests.helpers import Client, NodeClient, sse, start, upload
from tests.test_runs_api import PIXELS


@pytest.fixture
async def ipfs(settings: Settings) -> AsyncIterator[IpfsClient]:
    async with aiohttp.ClientSession() as session:
        yield IpfsClient(str(settings.ipfs_api), session)


async def test_delete_unpins_and_forgets(client: Client, auth: dict[str, str], ipfs: IpfsClient) -> None:
    """The only owner's delete unpins the bytes and removes every index entry and asset name;
    reads served from memory before the delete are not served after it."""
    item = await upload(client, auth, os.urandom(5000), name="scratch")
    for ref in (item["cid"], item["content_id"]):  # small content: now held in memory too
        assert (await client.get(f"/cache/{ref}")).status == 200
    assert (await client.delete(f"/cache/{item['cid']}")).status == 401
    response = await client.delete(f"/cache/{item['cid']}", headers=auth)
    assert response.status == 200
    assert (await response.json())["deleted"] is True
    assert await ipfs.pin_ls(item["cid"]) == set()
    for ref in (item["cid"], item["content_id"]):
        assert (await client.get(f"/cache/{ref}")).status == 404
    assert (await (await client.get("/assets")).json())["items"] == []
    assert (await client.delete(f"/cache/{item['cid']}", headers=auth)).status == 404


async def test_content_a_run_uses_cannot_be_deleted(
    client: Client, auth: dict[str, str], ipfs: IpfsClient
) -> None:
    """Inputs and outputs of a run are refused (409) until the run is deleted."""
    image = await upload(client, auth, png_bytes(PIXELS))
    run = await start(client, auth, {"recipe": "invert", "inputs": [image["cid"]]})
    await sse(client, run["run_id"])
    output = (await (await client.get(f"/runs/{run['run_id']}")).json())["output"]
    for cid in (image["cid"], output["cid"]):
        refused = await client.delete(f"/cache/{cid}", headers=auth)
        assert refused.status == 409
        assert (await refused.json())["error"]["details"]["runs"] == [run["run_id"]]
    assert (await client.delete(f"/runs/{run['run_id']}", headers=auth)).status == 200
    assert (await client.delete(f"/cache/{image['cid']}", headers=auth)).status == 200
    assert await ipfs.pin_ls(image["cid"]) == set()


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    inside, outside = tmp_path / "imports", tmp_path / "private"
    inside.mkdir()
    outside.mkdir()
    (inside / "clip.bin").write_bytes(b"imported bytes")
    (outside / "secret.bin").write_bytes(b"not for you")
    (inside / "link.bin").symlink_to(outside / "secret.bin")
    (inside / "loop").symlink_to(inside / "loop")
    os.mkfifo(inside / "fifo")
    return inside, outside


@pytest.fixture
async def importer(settings: Settings, roots: tuple[Path, Path], node_client: NodeClient) -> Client:
    return await node_client(settings.replace(import_roots=(roots[0],)))


async def test_import_under_a_root(importer: Client, settings: Settings, roots: tuple[Path, Path]) -> None:
    token = (settings.data_dir / "admin_token").read_text().strip()
    response = await importer.post(
        "/cache/import",
        params={"path": str(roots[0] / "clip.bin"), "name": "clip"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status == 201
    body = await response.json()
    assert body["name"] == "clip" and body["size"] == len(b"imported bytes")
    assert await (await importer.get(f"/cache/{body['cid']}")).read() == b"imported bytes"


@pytest.mark.parametrize(
    ("make_path", "status"),
    [
        (lambda inside, outside: str(outside / "secret.bin"), 403),
        (lambda inside, outside: str(inside / ".." / "private" / "secret.bin"), 403),
        (lambda inside, outside: str(inside / "link.bin"), 403),
        (lambda inside, outside: "imports/clip.bin", 400),
        (lambda inside, outside: "", 400),
        (lambda inside, outside: str(inside / "loop"), 403),
        (lambda inside, outside: str(inside / "fifo"), 403),
        (lambda inside, outside: str(inside), 403),
        (lambda inside, outside: str(inside / "missing.bin"), 404),
    ],
)
async def test_import_refuses_escapes(
    importer: Client, settings: Settings, roots: tuple[Path, Path], make_path: object, status: int
) -> None:
    """Outside paths, '..', symlinks leading out or looping, FIFOs and directories are 403,
    relative or empty paths 400, missing files 404; nothing is stored, nothing blocks."""
    token = (settings.data_dir / "admin_token").read_text().strip()
    path = make_path(*roots)  # type: ignore[operator]
    response = await importer.post(
        "/cache/import", params={"path": path}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status == status
    assert (await response.json())["error"]["details"]["field"] == "path"
    assert (await (await importer.get("/cache")).json())["total"] == 0


async def test_outside_the_roots_existing_or_not_is_one_answer(
    importer: Client, settings: Settings, roots: tuple[Path, Path]
) -> None:
    """No oracle: a path outside the import roots gets the same 403 and message whether a file
    is there or not (a link inside the roots to a missing file outside too)."""
    inside, outside = roots
    (inside / "dangling.bin").symlink_to(outside / "nothing-here.bin")
    headers = {"Authorization": f"Bearer {(settings.data_dir / 'admin_token').read_text().strip()}"}
    answers = []
    for path in (outside / "secret.bin", outside / "nothing-here.bin", "/etc/shadow", "/etc/doesnotexist",
                 inside / "dangling.bin"):  # fmt: skip
        response = await importer.post("/cache/import", params={"path": str(path)}, headers=headers)
        answers.append((response.status, await response.json()))
    assert {status for status, _ in answers} == {403}
    assert len({body["error"]["message"] for _, body in answers}) == 1


async def test_import_is_off_without_roots(
    client: Client, auth: dict[str, str], roots: tuple[Path, Path]
) -> None:
    response = await client.post("/cache/import", params={"path": str(roots[0] / "clip.bin")}, headers=auth)
    assert response.status == 403
    assert "ARTDAG_IMPORT_ROOTS" in (await response.json())["error"]["message"]
