"""GET /cache?kind=: images, video and audio listed apart from other content, kept in step with
uploads, deletions and restores, and filled once for content indexed before the listings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis.asyncio as aioredis

from node.federation.snapshot import Snapshot
from node.http.appkeys import NODE
from node.pixels.imaging import png_bytes
from node.sync.keys import MEDIA_KINDS, Keys
from tests.helpers import Client, upload
from tests.media import make, solid, tone


async def _listed(client: Client, query: str = "") -> tuple[list[str], int]:
    response = await client.get(f"/cache{query}")
    assert response.status == 200, await response.text()
    body = await response.json()
    return [item["content_id"] for item in body["items"]], body["total"]


async def _upload_kinds(client: Client, auth: dict[str, str], tmp_path: Path) -> dict[str, dict[str, Any]]:
    """One item of each kind, uploaded in this order (so newest first is the reverse)."""
    image = png_bytes(np.full((12, 16, 3), 40, np.uint8))
    ogg = make(tmp_path / "a.ogg", "-f", "lavfi", "-i", "sine=duration=0.5")  # application/ogg
    files = {
        "image": image,
        "video": solid(tmp_path / "v.mp4", (0, 0, 255)).read_bytes(),
        "audio": tone(tmp_path / "a.wav", seconds=0.5).read_bytes(),
        "ogg": ogg.read_bytes(),
        "json": json.dumps({"not": "media"}).encode(),
    }
    return {name: await upload(client, auth, data) for name, data in files.items()}


async def test_kind_lists_only_that_kind(client: Client, auth: dict[str, str], tmp_path: Path) -> None:
    """kind=media lists images, video and audio (Ogg included), newest first; kind=image,
    video, audio one kind each; no kind lists everything, as before."""
    items = await _upload_kinds(client, auth, tmp_path)
    ids = {name: item["content_id"] for name, item in items.items()}
    assert items["ogg"]["media_type"] == "application/ogg"
    assert await _listed(client) == ([ids[n] for n in ("json", "ogg", "audio", "video", "image")], 5)
    assert await _listed(client, "?kind=media") == ([ids[n] for n in ("ogg", "audio", "video", "image")], 4)
    assert await _listed(client, "?kind=image") == ([ids["image"]], 1)
    assert await _listed(client, "?kind=video") == ([ids["video"]], 1)
    assert await _listed(client, "?kind=audio") == ([ids["ogg"], ids["audio"]], 2)
    assert await _listed(client, "?kind=media&offset=1&limit=2") == ([ids["audio"], ids["video"]], 4)


async def test_an_upload_again_keeps_its_place(client: Client, auth: dict[str, str], tmp_path: Path) -> None:
    """The same bytes uploaded again are listed once, where they were first listed."""
    items = await _upload_kinds(client, auth, tmp_path)
    again = await upload(client, auth, (tmp_path / "v.mp4").read_bytes())
    assert again["content_id"] == items["video"]["content_id"]
    assert (await _listed(client, "?kind=media"))[0][-2] == again["content_id"]
    assert await _listed(client, "?kind=video") == ([again["content_id"]], 1)


@pytest.mark.parametrize("kind", ["images", "IMAGE", "", "text", "media,image"])
async def test_an_unknown_kind_is_refused(client: Client, kind: str) -> None:
    response = await client.get("/cache", params={"kind": kind})
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == "invalid_input" and error["details"]["field"] == "kind"


async def test_deleted_content_leaves_the_listing(
    client: Client, auth: dict[str, str], tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    items = await _upload_kinds(client, auth, tmp_path)
    for name in ("image", "audio"):
        assert (await client.delete(f"/cache/{items[name]['cid']}", headers=auth)).status == 200
    assert await _listed(client, "?kind=image") == ([], 0)
    assert await _listed(client, "?kind=audio") == ([items["ogg"]["content_id"]], 1)
    assert (await _listed(client, "?kind=media"))[1] == 2
    keys = client.app[NODE].keys
    for listing in (keys.media, *map(keys.media_of_kind, MEDIA_KINDS)):
        assert await redis_client.zscore(listing, items["image"]["content_id"]) is None


async def _forget_media_listings(redis_client: aioredis.Redis, keys: Keys) -> None:
    await redis_client.delete(keys.media, *map(keys.media_of_kind, MEDIA_KINDS))


async def test_a_restore_lists_media(
    client: Client, auth: dict[str, str], tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    """Content read back from the node's published index is listed as media again."""
    await _upload_kinds(client, auth, tmp_path)
    before = await _listed(client, "?kind=media")
    keys = client.app[NODE].keys
    snapshot = Snapshot(redis_client, keys, client.app[NODE].identity.node_id)
    written = await snapshot.export()
    await _forget_media_listings(redis_client, keys)
    await snapshot.restore(written)
    assert await _listed(client, "?kind=media") == before
    assert (await _listed(client, "?kind=image"))[1] == 1
