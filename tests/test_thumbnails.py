"""GET /cache/{ref}/thumbnail: a small WebP of an image, a video's frame or a sound's waveform,
made once (however many ask together), then served from disk with long-lived cache headers."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from node.http.appkeys import NODE
from node.media.thumbnails import MAX_PIXELS
from node.pixels.imaging import png_bytes
from node.store.errors import ThumbnailTimeout
from node.store.thumbnail_cache import Thumbnails
from tests.helpers import Client, upload
from tests.media import pattern_clip, tone
from tests.test_openapi import Conformance

IMMUTABLE = "public, max-age=31536000, immutable"


def _webp(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "WEBP"
    return image


def _picture(width: int, height: int) -> bytes:
    gradient = np.linspace(0, 255, width, dtype=np.uint8)
    return png_bytes(np.dstack([np.tile(gradient, (height, 1))] * 3))


async def test_an_image_gets_a_small_webp(client: Client, auth: dict[str, str]) -> None:
    """At most 320 px on its longest side, its shape kept; cached for a year, with an ETag."""
    item = await upload(client, auth, _picture(1000, 600))
    response = await client.get(f"/cache/{item['cid']}/thumbnail")
    assert response.status == 200
    assert response.content_type == "image/webp"
    assert response.headers["Cache-Control"] == IMMUTABLE
    assert response.headers["ETag"]
    assert _webp(await response.read()).size == (320, 192)
    by_hash = await client.get(f"/cache/{item['content_id']}/thumbnail")  # any ref the content has
    assert by_hash.status == 200 and by_hash.headers["ETag"] == response.headers["ETag"]


async def test_a_small_image_is_not_enlarged(client: Client, auth: dict[str, str]) -> None:
    item = await upload(client, auth, _picture(40, 30))
    response = await client.get(f"/cache/{item['cid']}/thumbnail")
    assert _webp(await response.read()).size == (40, 30)


async def test_a_photo_is_turned_upright(client: Client, auth: dict[str, str]) -> None:
    """A JPEG whose EXIF says 'rotate 90°' gets an upright (tall) thumbnail."""
    photo = Image.new("RGB", (640, 320), (200, 60, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to view
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", exif=exif)
    item = await upload(client, auth, buffer.getvalue())
    assert item["media_type"] == "image/jpeg"
    response = await client.get(f"/cache/{item['cid']}/thumbnail")
    assert _webp(await response.read()).size == (160, 320)


async def test_made_once_then_served_from_disk(client: Client, auth: dict[str, str]) -> None:
    """A second request serves the same file, not a new one; If-None-Match gets a 304."""
    thumbnails = client.app[NODE].thumbnails
    item = await upload(client, auth, _picture(500, 500))
    first = await client.get(f"/cache/{item['cid']}/thumbnail")
    body = await first.read()
    path = thumbnails.path_for(item["content_id"])
    made_at = path.stat().st_mtime_ns
    second = await client.get(f"/cache/{item['cid']}/thumbnail")
    assert await second.read() == body
    assert second.headers["ETag"] == first.headers["ETag"]
    assert path.stat().st_mtime_ns == made_at
    assert thumbnails.maker_runs == 1
    cached = await client.get(
        f"/cache/{item['cid']}/thumbnail", headers={"If-None-Match": first.headers["ETag"]}
    )
    assert cached.status == 304
    assert thumbnails.maker_runs == 1


async def test_concurrent_requests_make_it_once(client: Client, auth: dict[str, str]) -> None:
    item = await upload(client, auth, _picture(900, 300))
    responses = await asyncio.gather(*(client.get(f"/cache/{item['cid']}/thumbnail") for _ in range(6)))
    bodies = {await response.read() for response in responses}
    assert [response.status for response in responses] == [200] * 6
    assert len(bodies) == 1
    assert client.app[NODE].thumbnails.maker_runs == 1


async def test_a_video_gets_a_frame(client: Client, auth: dict[str, str], tmp_path: Path) -> None:
    """A frame of the video (a second in), no larger than the video, and its shape kept."""
    clip = pattern_clip(tmp_path / "clip.mp4", size="480x270", seconds=3.0)
    item = await upload(client, auth, clip.read_bytes())
    response = await client.get(f"/cache/{item['cid']}/thumbnail")
    assert response.status == 200, await response.text()
    frame = _webp(await response.read())
    assert frame.size == (320, 180)
    colours = np.unique(np.asarray(frame.convert("RGB")).reshape(-1, 3), axis=0)
    assert len(colours) > 10  # a picture, not one flat colour


async def test_a_short_video_gets_its_first_frame(
    client: Client, auth: dict[str, str], tmp_path: Path
) -> None:
    clip = pattern_clip(tmp_path / "short.mp4", seconds=0.3)
    item = await upload(client, auth, clip.read_bytes())
    response = await client.get(f"/cache/{item['cid']}/thumbnail")
    assert response.status == 200, await response.text()
    assert _webp(await response.read()).size == (160, 120)


async def test_audio_gets_a_waveform(client: Client, auth: dict[str, str], tmp_path: Path) -> None:
    item = await upload(client, auth, tone(tmp_path / "tone.wav", seconds=1.0).read_bytes())
    response = await client.get(f"/cache/{item['cid']}/thumbnail")
    assert response.status == 200, await response.text()
    waveform = _webp(await response.read())
    assert waveform.size == (640, 120)
    assert waveform.mode == "RGBA"  # drawn on a transparent ground
    alpha = np.asarray(waveform)[..., 3]
    assert 0 < np.count_nonzero(alpha) < alpha.size


async def test_what_is_not_media_has_none(client: Client, auth: dict[str, str]) -> None:
    """JSON, an unreadable image, a missing or malformed ref: the documented errors."""
    conforms = Conformance(await (await client.get("/openapi.json")).json())
    path = "/cache/{ref}/thumbnail"
    data = await upload(client, auth, json.dumps({"a": 1}).encode())
    refused = await conforms.check(await client.get(f"/cache/{data['cid']}/thumbnail"), "get", path)
    assert refused["error"]["code"] == "unsupported_media"
    broken = await upload(client, auth, b"\x89PNG\r\n\x1a\n" + b"\x00" * 200)
    assert broken["media_type"] == "image/png"
    for _ in range(2):
        refused = await conforms.check(await client.get(f"/cache/{broken['cid']}/thumbnail"), "get", path)
        assert refused["error"]["code"] == "unsupported_media"
        assert "not an image" in refused["error"]["message"]
    assert client.app[NODE].thumbnails.maker_runs == 1  # the second answer came from memory
    missing = await client.get(f"/cache/{'ab' * 32}/thumbnail")
    assert missing.status == 404
    await conforms.check(missing, "get", path)
    assert (await client.get("/cache/not-a-cid/thumbnail")).status == 400
    assert client.app[NODE].thumbnails.maker_runs == 1


async def test_a_huge_image_is_refused(client: Client, auth: dict[str, str]) -> None:
    """Over the pixel limit: refused with a reason before it is decoded."""
    side = int(MAX_PIXELS**0.5) + 10
    buffer = io.BytesIO()
    Image.new("L", (side, side)).save(buffer, format="PNG")
    item = await upload(client, auth, buffer.getvalue())
    response = await client.get(f"/cache/{item['cid']}/thumbnail")
    assert response.status == 415
    assert "megapixels" in (await response.json())["error"]["message"]


async def test_deleting_content_removes_its_thumbnail(client: Client, auth: dict[str, str]) -> None:
    item = await upload(client, auth, _picture(100, 100))
    assert (await client.get(f"/cache/{item['cid']}/thumbnail")).status == 200
    path = client.app[NODE].thumbnails.path_for(item["content_id"])
    assert path.is_file()
    assert (await client.delete(f"/cache/{item['cid']}", headers=auth)).status == 200
    assert not path.exists()
    assert (await client.get(f"/cache/{item['cid']}/thumbnail")).status == 404


async def test_a_thumbnail_past_its_deadline_is_not_made(
    client: Client, auth: dict[str, str], tmp_path: Path
) -> None:
    """Too long to make: an error that says so (503, not remembered), and no file."""
    clip = pattern_clip(tmp_path / "clip.mp4", seconds=3.0)
    entry = await client.app[NODE].store.resolve((await upload(client, auth, clip.read_bytes()))["cid"])
    hurried = Thumbnails(tmp_path / "thumbnails", client.app[NODE].cache, timeout_s=0.001)
    for _ in range(2):
        with pytest.raises(ThumbnailTimeout, match="longer than"):
            await hurried.get(entry)
    assert hurried.maker_runs == 2
    assert not hurried.path_for(entry.content_id).exists()
    assert [path.name for path in (tmp_path / "thumbnails").rglob("*") if path.is_file()] == []
