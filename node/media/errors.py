"""Why a media file could not be read or made."""

from __future__ import annotations


class MediaError(ValueError):
    """A media input is empty, unreadable or lacks what a step needs, or ffmpeg failed.

    A ValueError, so a worker reports it as the step's error, and its message is written for
    the artist: which input, what is wrong with it.
    """
