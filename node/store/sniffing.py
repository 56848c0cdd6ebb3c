"""Media types sniffed from content's first bytes (puremagic: pure Python magic numbers)."""

from __future__ import annotations

import puremagic

SNIFF_BYTES = 8192
OCTET_STREAM = "application/octet-stream"
TEXT = "text/plain; charset=utf-8"
AUDIO_MP4_BRANDS = (b"M4A ", b"M4B ", b"M4P ", b"F4A ")  # ISO media files of sound alone


def sniff_media_type(head: bytes) -> str:
    """The media type of content starting with ``head``: from its magic number, else UTF-8 text,
    else octet-stream. Never trusts what a client claims."""
    if not head:
        return OCTET_STREAM
    if head[4:8] == b"ftyp" and head[8:12] in AUDIO_MP4_BRANDS:
        return "audio/mp4"  # puremagic calls every ISO media file video/mp4
    try:
        matches = puremagic.magic_string(head)
    except (puremagic.PureError, ValueError):
        matches = []
    text = _is_text(head)
    for match in matches:
        # A textual match on bytes that are not text is a coincidence (random bytes starting
        # with "{" are not JSON), and serving them as text breaks clients that decode it.
        if match.mime_type and (text or not _textual(str(match.mime_type))):
            return str(match.mime_type)
    return TEXT if text else OCTET_STREAM


def _is_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3  # only a character cut off at the sniff boundary
    return True


def _textual(media_type: str) -> bool:
    main = media_type.split(";", 1)[0].strip().lower()
    return main.startswith("text/") or main.endswith(("json", "xml", "javascript"))
