"""``/cache``: upload content (streamed into IPFS), download it by CID or SHA3-256, list it."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from aiohttp import BodyPartReader, ClientPayloadError, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from node.errors import Forbidden, InvalidInput, NodeError, NotFound, RequestTimeout, UnsupportedMedia
from node.http.appkeys import NODE, PROBE_SLOTS
from node.http.auth import require_user
from node.http.hot import HOT
from node.http.limits import quota_of
from node.http.openapi import operation
from node.http.params import ref_param
from node.http.ranges import parse_range
from node.http.schemas import CONTENT_LINKS, OPTIONAL_ASSET_NAME_SCHEMA, answer, page, query, ref
from node.media.errors import MediaError
from node.media.probe import probe_file
from node.store.content import Stored
from node.store.errors import InvalidUpload, UploadTooLarge
from node.store.ipfs import CHUNK_SIZE
from node.sync.index import ContentEntry
from node.sync.keys import ASSET_NAME, MEDIA_KINDS

log = logging.getLogger(__name__)
T = TypeVar("T")

MULTIPART_SLACK = 64 * 1024  # boundaries and part headers around the file, beyond ARTDAG_MAX_UPLOAD
MAX_FIELD_BYTES = 1024
PAGE_DEFAULT, PAGE_MAX = 50, 1000
# Content is served as it was uploaded: never let a browser run it as this node's page.
CONTENT_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "sandbox; default-src 'none'",
    "Cache-Control": "public, max-age=31536000, immutable",  # content-addressed: never changes
}


def entry_json(entry: ContentEntry, asset: str | None = None) -> dict[str, Any]:
    """How content is described in every answer of the API."""
    return {
        "cid": entry.cid,
        "content_id": entry.content_id,
        "sha3_256": entry.content_id,
        "size": entry.size,
        "media_type": entry.media_type,
        "created": datetime.fromtimestamp(entry.created, UTC).isoformat().replace("+00:00", "Z"),
        "url": f"/cache/{entry.cid}",
        **({"name": asset} if asset else {}),
    }


@operation(
    "Store a file (streamed into IPFS, pinned, indexed)",
    "content",
    {
        201: answer("Stored", ref("Content"), CONTENT_LINKS),
        200: answer("Already held; you are now an owner", ref("Content"), CONTENT_LINKS),
    },
    errors=(400, 408, 409, 413, 503),
    auth=True,
    query=(query("name", OPTIONAL_ASSET_NAME_SCHEMA, "make it an asset with this name"),),
    body={
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "additionalProperties": False,
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "name": {
                            **OPTIONAL_ASSET_NAME_SCHEMA,
                            "description": "make it an asset with this name (instead of ?name=)",
                        },
                    },
                }
            }
        },
    },
)
async def upload(request: web.Request) -> web.Response:
    """``POST /cache/upload``: multipart ``file`` (and optional ``name``: make it an asset)."""
    user = await require_user(request)
    store = request.app[NODE].store
    room = await store.room(request.app[NODE].settings.max_upload, user.name, quota_of(request, user))
    room.check(request.content_length, MULTIPART_SLACK)  # before a byte of the body is read
    if request.content_type != "multipart/form-data":
        raise InvalidUpload("send the file as multipart/form-data in a field named 'file'", field="file")
    await store.check_ready()
    name = request.query.get("name", "")
    async with store.gate.adding():  # added unpinned, then pinned: no repo/gc in between
        entry: ContentEntry | None = None
        idle_s = request.app[NODE].settings.body_timeout
        async for field in _fields(await _body_errors(request.multipart(), idle_s), idle_s):
            if field.name == "name" and field.filename is None:
                name = await _small_field(field, idle_s)
            elif field.name == "file" and entry is None:
                if name:
                    await store.check_asset_free(_checked_asset(name), user.name)
                entry = await store.ingest(_part_chunks(field, idle_s), room)
            else:
                raise InvalidUpload(
                    f"unexpected form field {field.name!r}; send 'file' once and optionally 'name'"
                )
        if entry is None:
            raise InvalidUpload("no file: send it in a form field named 'file'", field="file")
        asset = _checked_asset(name) if name else ""
        stored = await store.commit(entry, owner=user.name, asset=asset, quota=room.quota)
    request.app[NODE].metrics.uploaded_bytes.inc(entry.size)
    return _stored_response(stored, name)


async def read_upload_field(request: web.Request, name: str, limit: int) -> bytes:
    """A small multipart field read whole (recipes): 400 if absent, 413 past ``limit``."""
    idle_s = request.app[NODE].settings.body_timeout
    async for field in _fields(await _body_errors(request.multipart(), idle_s), idle_s):
        if field.name == name:
            return await _part_bytes(field, limit, idle_s, lambda: UploadTooLarge.over(limit))
    raise InvalidUpload(f"no form field named {name!r}", field=name)


@operation(
    "Drop your ownership; the bytes go when nobody owns them and no run uses them",
    "content",
    {200: answer("Done", ref("ContentDeleted"))},
    errors=(400, 403, 409),
    auth=True,
    description="Refused with 409 while a run uses the content (content_in_use, naming the runs) "
    "or while an L2 has it published (content_published); 503 when an L2 cannot be asked.",
)
async def remove(request: web.Request) -> web.Response:
    """``DELETE /cache/{ref}``: drop your ownership; the bytes go when no owner and no run is
    left (409 while a run uses them)."""
    user = await require_user(request)
    store = request.app[NODE].store
    entry = await store.resolve(ref_param(request, "ref"))
    deleted = await request.app[NODE].deletion.delete_content(entry, user)  # gone: store/gone.py
    return web.json_response(
        {
            "content_id": entry.content_id,
            "cid": entry.cid,
            "deleted": deleted.unpinned,
            "owners_left": deleted.owners_left,
        }
    )


@operation(
    "Store a file from under ARTDAG_IMPORT_ROOTS",
    "content",
    {
        201: answer("Stored", ref("Content"), CONTENT_LINKS),
        200: answer("Already held", ref("Content"), CONTENT_LINKS),
    },
    errors=(400, 403, 404, 409, 413),
    auth=True,
    query=(
        query(
            "path",
            {"type": "string", "pattern": "^/[^\\x00]*$"},
            "absolute path under an import root",
            required=True,
        ),
        query("name", OPTIONAL_ASSET_NAME_SCHEMA, "make it an asset with this name"),
    ),
)
async def import_file(request: web.Request) -> web.Response:
    """``POST /cache/import?path=&name=``: store a file from under ``ARTDAG_IMPORT_ROOTS``."""
    user = await require_user(request)
    settings = request.app[NODE].settings
    name = request.query.get("name", "")
    store = request.app[NODE].store
    if name:
        await store.check_asset_free(_checked_asset(name), user.name)
    handle = await asyncio.to_thread(open_importable, request.query.get("path", ""), settings.import_roots)
    try:
        stored = await store.put_handle(
            handle, max_size=settings.max_upload, owner=user.name, asset=name, quota=quota_of(request, user)
        )
    finally:
        handle.close()  # read-only: one syscall; an await here could be skipped at shutdown
    return _stored_response(stored, name)


def open_importable(given: str, roots: tuple[Path, ...]) -> BinaryIO:
    """The regular file ``given`` names, opened, if it lies under an import root once every
    symlink is resolved. What is checked is what is read: the file is opened without following
    a final symlink, and the opened descriptor's own path is checked against the roots."""
    if not roots:
        raise Forbidden("imports are off: set ARTDAG_IMPORT_ROOTS", field="path")
    if not given or "\x00" in given or not given.startswith("/"):
        raise InvalidInput("path must be an absolute path under an import root", field="path")
    if ".." in Path(given).parts:
        raise Forbidden("path must not contain '..'", field="path")
    try:
        # Outside the roots is one answer, whether the path exists or not: no existence oracle.
        _check_under(Path(given).resolve(strict=False), roots)
        resolved = Path(given).resolve(strict=True)
        _check_under(resolved, roots)
        fd = os.open(resolved, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFound(f"no file at {given}", field="path") from None
    except (OSError, RuntimeError) as exc:  # a symlink loop, a link swapped in, no permission
        raise Forbidden(f"cannot import {given}: {exc}", field="path") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Forbidden(f"{given} is not a regular file", field="path")
        _check_under(Path(os.readlink(f"/proc/self/fd/{fd}")), roots)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _check_under(path: Path, roots: tuple[Path, ...]) -> None:
    if not any(path.is_relative_to(root.resolve()) for root in roots):
        raise Forbidden("path is outside ARTDAG_IMPORT_ROOTS (after following links)", field="path")


def _stored_response(stored: Stored, name: str) -> web.Response:
    body = entry_json(stored.entry, name or None)
    return web.json_response(body, status=200 if stored.existed else 201, headers={"Location": body["url"]})


async def _fields(reader: MultipartReader, idle_s: float) -> AsyncIterator[BodyPartReader]:
    while (part := await _body_errors(reader.next(), idle_s)) is not None:
        if not isinstance(part, BodyPartReader):
            raise InvalidUpload("nested multipart bodies are not accepted")
        yield part


async def _body_errors(reading: Awaitable[T], idle_s: float) -> T:
    """Await a read of the request body: a broken or malformed body is 400, and no byte for
    ``idle_s`` (the first one included) is 408, so a stalled upload cannot hold the node."""
    try:
        return await asyncio.wait_for(reading, idle_s)
    except TimeoutError:
        raise RequestTimeout(
            f"no bytes of the body came for {idle_s:.0f} s (ARTDAG_BODY_TIMEOUT); send it again",
            field="file",
        ) from None
    except (ConnectionError, ClientPayloadError, HttpProcessingError) as exc:
        log.info("upload incomplete: %s", exc)
        raise InvalidUpload("upload incomplete: the body ended early or the connection closed") from exc
    except ValueError as exc:  # aiohttp's multipart parser on bad framing
        raise InvalidUpload(f"malformed multipart body: {exc}") from exc


async def _part_bytes(
    part: BodyPartReader, limit: int, idle_s: float, too_long: Callable[[], NodeError]
) -> bytes:
    """A whole multipart field, refused with ``too_long()`` past ``limit`` bytes."""
    data = b""
    while chunk := await _body_errors(part.read_chunk(min(limit + 1, CHUNK_SIZE)), idle_s):
        data += chunk
        if len(data) > limit:
            raise too_long()
    return data


async def _small_field(part: BodyPartReader, idle_s: float) -> str:
    message = f"form field {part.name!r} is longer than {MAX_FIELD_BYTES} bytes"
    data = await _part_bytes(part, MAX_FIELD_BYTES, idle_s, lambda: InvalidUpload(message, field=part.name))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidUpload(f"form field {part.name!r} is not UTF-8 text", field=part.name) from exc


async def _part_chunks(part: BodyPartReader, idle_s: float) -> AsyncIterator[bytes]:
    while chunk := await _body_errors(part.read_chunk(CHUNK_SIZE), idle_s):
        yield chunk


def _checked_asset(name: str) -> str:
    if not ASSET_NAME.fullmatch(name):
        raise InvalidUpload(
            f"asset name {name!r} must be 1-64 letters, digits and ._- starting with a letter or digit",
            field="name",
        )
    return name


@operation(
    "The bytes, by CID or SHA3-256 hex; Range, ETag and If-None-Match work",
    "content",
    {
        200: {
            "description": "The content",
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
        },
        206: {
            "description": "The range asked for",
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
        },
        304: {"description": "Not modified"},
    },
    errors=(400, 416),
    headers=(
        {"name": "Range", "in": "header", "required": False, "schema": {"type": "string"}},
        {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"}},
    ),
)
async def download(request: web.Request) -> web.StreamResponse:
    """``GET``/``HEAD /cache/{ref}``: the bytes, by CID (``Qm…``, ``z…``, ``b…``) or SHA3-256 hex,
    with Range."""
    store = request.app[NODE].store
    hot = request.app[HOT]
    entry = await hot.entry(store, ref_param(request, "ref"))
    etag = f'"{entry.content_id}"'
    headers = {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Content-Type": entry.media_type,
        "X-IPFS-Path": f"/ipfs/{entry.cid}",
        **CONTENT_SECURITY_HEADERS,
    }
    if _etags(request.headers.get("If-None-Match", "")) & {etag, "*"}:
        return web.Response(status=304, headers={key: headers[key] for key in ("ETag", "Cache-Control")})
    wanted = None
    if request.headers.get("If-Range", etag) == etag:
        wanted = parse_range(request.headers.get("Range"), entry.size)
    first, last = wanted or (0, entry.size - 1)
    if wanted is not None:
        headers["Content-Range"] = f"bytes {first}-{last}/{entry.size}"
    status = 206 if wanted else 200
    small = await hot.small(store, entry) if request.method == "GET" else None
    if small is not None:  # small content: from memory, in one piece
        request.app[NODE].metrics.served_bytes.inc(last - first + 1)
        return web.Response(status=status, body=small[first : last + 1], headers=headers)
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = last - first + 1
    if request.method == "HEAD":
        await response.prepare(request)
        return response
    async with store.open(entry, offset=first, length=last - first + 1) as chunks:
        await response.prepare(request)
        await _relay(request, response, chunks, entry.cid)
    return response


async def _relay(
    request: web.Request, response: web.StreamResponse, chunks: AsyncIterator[bytes], cid: str
) -> None:
    """Copy the daemon's bytes to the client. Once the status line is sent an error cannot be
    answered any more: the connection is cut, so the client sees a short body, not a lie."""
    served = request.app[NODE].metrics.served_bytes
    try:
        async for chunk in chunks:
            await response.write(chunk)
            served.inc(len(chunk))
        await response.write_eof()
    except ConnectionError:
        log.info("download of %s ended by the client", cid)
    except NodeError as exc:
        log.warning("download of %s broke off: %s", cid, exc.message)
        if request.transport is not None:
            request.transport.close()


def _etags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


PROBES_AT_ONCE = 2  # ffprobe processes one node runs for clients at a time


@operation(
    "Media facts: kind, duration, size, frame rate, streams",
    "content",
    {200: answer("The content and what it holds", ref("Probe"))},
    errors=(400, 415),
)
async def probe(request: web.Request) -> web.Response:
    """``GET /cache/{ref}/probe``: duration, size, frame rate and streams of image, video or
    audio content; 415 for content that is none of these. Probed once (failures too), then
    kept; at most PROBES_AT_ONCE probes run at a time."""
    store = request.app[NODE].store
    entry = await store.resolve(ref_param(request, "ref"))
    report = await store.index.media_info(entry.content_id)
    if report is None:
        async with request.app[PROBE_SLOTS]:
            report = await _probe_report(request.app, entry)
        await store.index.put_media_info(entry.content_id, report)
    found = json.loads(report)
    if "error" in found:
        raise UnsupportedMedia(found["error"], field="ref")
    return web.json_response({**entry_json(entry), "media": found})


async def _probe_report(app: web.Application, entry: ContentEntry) -> str:
    path = await app[NODE].cache.materialize(entry)
    try:
        info = await asyncio.to_thread(probe_file, path, entry.cid)
    except MediaError as exc:
        return json.dumps({"error": str(exc)})
    return json.dumps(info.as_json())


THUMBNAIL_HEADERS = {
    "Content-Type": "image/webp",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": CONTENT_SECURITY_HEADERS["Cache-Control"],  # a content's thumbnail never changes
}


@operation(
    "A small WebP picture of image, video or audio content, made once and kept",
    "content",
    {
        200: {
            "description": "An image's picture (at most 320 px), a video's frame, or an audio waveform",
            "content": {"image/webp": {"schema": {"type": "string", "format": "binary"}}},
        },
        304: {"description": "Not modified"},
    },
    errors=(400, 415),
    headers=({"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"}},),
    description="415 for content that is not an image, video or audio, or cannot be read as one.",
)
async def thumbnail(request: web.Request) -> web.StreamResponse:
    """``GET /cache/{ref}/thumbnail``: the content's thumbnail, made on first request (at most
    a few at a time, each once), then served from disk; ETag and If-None-Match work."""
    entry = await request.app[HOT].entry(request.app[NODE].store, ref_param(request, "ref"))
    path = await request.app[NODE].thumbnails.get(entry)
    return web.FileResponse(path, headers=THUMBNAIL_HEADERS)


LISTING_KINDS = ("media", *MEDIA_KINDS)  # media: images, video and audio together


@operation(
    "Content this node holds, newest first",
    "content",
    {200: answer("A page of content", ref("ContentPage"))},
    errors=(400,),
    query=(
        *page(PAGE_DEFAULT, PAGE_MAX, 10**9),
        query(
            "kind",
            {"enum": list(LISTING_KINDS)},
            "only media (images, video and audio) or only one of those kinds; all content if absent",
        ),
        query(
            "intermediates",
            {"enum": ["true", "false"]},
            "with kind: also the intermediate outputs of steps (false, the default: only uploads, "
            "imports and runs' outputs)",
        ),
    ),
)
async def listing(request: web.Request) -> web.Response:
    """``GET /cache?offset=&limit=&kind=``: content this node holds, newest first; with
    ``kind``, only media (``media``) or one kind of it (``image``, ``video``, ``audio``)."""
    offset = int_param(request, "offset", 0, 0, 10**9)
    limit = int_param(request, "limit", PAGE_DEFAULT, 1, PAGE_MAX)
    kind = request.query.get("kind")
    if kind is not None and kind not in LISTING_KINDS:
        raise InvalidInput(f"query parameter 'kind' must be one of {', '.join(LISTING_KINDS)}", field="kind")
    intermediates = request.query.get("intermediates", "false")
    if intermediates not in ("true", "false"):
        raise InvalidInput("query parameter 'intermediates' must be true or false", field="intermediates")
    index = request.app[NODE].store.index
    if kind is None:
        content_ids, total = await index.newest(offset, limit)
    else:
        media_kind = None if kind == "media" else kind
        content_ids, total = await index.newest_media(
            media_kind, offset, limit, intermediates=intermediates == "true"
        )
    entries = await index.get_many(content_ids)
    return web.json_response(
        {"items": [entry_json(entry) for entry in entries], "total": total, "offset": offset, "limit": limit}
    )


def int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    if not re.fullmatch(r"[0-9]{1,10}", text) or not low <= int(text) <= high:
        raise InvalidInput(f"query parameter {name!r} must be an integer from {low} to {high}", field=name)
    return int(text)
