"""The one form of a timestamp the node writes: UTC ISO 8601 with a ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def utc_text(seconds: float) -> str:
    """A time in seconds since the epoch, in the same form, to the second."""
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
