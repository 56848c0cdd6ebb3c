"""HTTP byte ranges (RFC 9110 section 14) for content downloads: one range per request."""

from __future__ import annotations

import re

from node.errors import RangeNotSatisfiable

_RANGE = re.compile(r"bytes=(\d{0,18})-(\d{0,18})")  # bounded: int() of 5000 digits raises


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) inclusive byte positions for a ``Range`` header, or None to send it all.

    Syntax we do not serve (multiple ranges, other units, garbage) is ignored, as the RFC
    allows; a well-formed range outside the content is 416."""
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first_text, last_text = match.groups()
    if not first_text:  # suffix range: the last N bytes
        if not last_text:
            return None
        length = int(last_text)
        if length == 0 or size == 0:
            raise _unsatisfiable(header, size)
        return max(0, size - length), size - 1
    first = int(first_text)
    last = min(int(last_text), size - 1) if last_text else size - 1
    if last_text and int(last_text) < first:
        return None  # invalid syntax: ignore it
    if first >= size:
        raise _unsatisfiable(header, size)
    return first, last


def _unsatisfiable(header: str, size: int) -> RangeNotSatisfiable:
    return RangeNotSatisfiable(
        f"range {header!r} is outside the content ({size} bytes)",
        headers={"Content-Range": f"bytes */{size}"},
        size=size,
    )
