"""How pages write values: ages, sizes, short ids, media kinds."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from node.media.kinds import kind_of

_UNITS = ("bytes", "KB", "MB", "GB", "TB")


def age(timestamp: str | float | None, now: datetime | None = None) -> str:
    """ "3 min ago" for an ISO time (as runs carry) or Unix seconds (as content carries)."""
    moment = _moment(timestamp)
    if moment is None:
        return ""
    seconds = max(0, int(((now or datetime.now(UTC)) - moment).total_seconds()))
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return "just now" if seconds < 5 else f"{seconds} s ago"


def iso(timestamp: str | float | None) -> str:
    """The machine-readable time for ``<time datetime=...>``."""
    moment = _moment(timestamp)
    return moment.isoformat().replace("+00:00", "Z") if moment else ""


def _moment(timestamp: str | float | None) -> datetime | None:
    if timestamp is None or timestamp == "":
        return None
    if isinstance(timestamp, (int, float)):
        return datetime.fromtimestamp(timestamp, UTC)
    try:
        return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return None


def size(count: int | None) -> str:
    """Bytes in the largest unit that keeps the number at least 1 (1000-based, as disks are)."""
    if count is None:
        return ""
    value = float(count)
    for unit in _UNITS:
        if value < 1000 or unit == _UNITS[-1]:
            if unit == "bytes":
                return "1 byte" if count == 1 else f"{int(value)} bytes"
            return f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def short(identifier: str | None, keep: int = 10) -> str:
    """A long id cut to its start and end, for tables (the full id stays in a title or link)."""
    if not identifier or len(identifier) <= keep + 6:
        return identifier or ""
    return f"{identifier[:keep]}…{identifier[-4:]}"


def media_kind(media_type: str | None) -> str:
    """image, video, audio (as the node's media listings and thumbnails say: Ogg and Matroska
    included) or other."""
    return kind_of(media_type or "") or "other"


def seconds(span: float | None) -> str:
    """A duration as a person reads it: ``0.4 s``, ``12 s``, ``3 min 05 s``, ``1 h 02 min``."""
    if span is None:
        return ""
    if span < 10:
        return f"{span:.1f} s"
    whole = round(span)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


FILTERS: dict[str, Callable[..., Any]] = {
    "age": age,
    "seconds": seconds,
    "iso": iso,
    "size": size,
    "short": short,
    "media_kind": media_kind,
}
