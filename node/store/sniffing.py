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
    for match in matches:
        if match.mime_type:
            return str(match.mime_type)
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a character cut off at the sniff boundary
            return OCTET_STREAM
    return TEXT
