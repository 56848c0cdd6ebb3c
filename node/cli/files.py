"""Writing the CLI's output files whole or not at all."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

# The node's own media types, which mimetypes does not know or names oddly.
EXTENSIONS = {
    "video/x-matroska": ".mkv",
    "audio/x-matroska": ".mka",
    "video/mp4": ".mp4",
    "audio/mp4": ".m4a",
    "image/png": ".png",
    "text/plain": ".txt",
}


@contextlib.contextmanager
def written_whole(target: Path) -> Iterator[BinaryIO]:
    """A file to write into that becomes ``target`` only once the block ends without error;
    a failed download leaves neither a partial file nor a clobbered old one."""
    handle, temporary = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".part", dir=target.parent or Path(".")
    )
    try:
        with os.fdopen(handle, "wb") as out:
            yield out
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
