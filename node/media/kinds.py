"""Media kinds (image, video, audio) as the planner sees them, from a content's media type."""

from __future__ import annotations

from typing import Literal

Kind = Literal["image", "video", "audio", "analysis"]  # analysis: an ANALYZE step's JSON record

# Containers that hold video or audio but are not named so by their media type.
_AV_CONTAINERS: dict[str, Kind] = {
    "application/mp4": "video",
    "application/ogg": "audio",
    "application/x-matroska": "video",
}


def kind_of(media_type: str) -> Kind | None:
    """The kind of content with this media type; None when it is neither image, video nor audio."""
    main = media_type.split(";", maxsplit=1)[0].strip().lower()
    if main.startswith("image/"):
        return "image"
    if main.startswith("video/"):
        return "video"
    if main.startswith("audio/"):
        return "audio"
    return _AV_CONTAINERS.get(main)
