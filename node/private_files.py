"""Secrets on disk: written 0600, whole or not at all, and never overwritten."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def create_private_file(path: Path, data: bytes) -> bool:
    """Write ``data`` to a new 0600 file at ``path``; False (nothing written) if it exists.

    The bytes go to a temporary file first and are linked into place, so a reader never sees a
    half-written secret and, of two processes racing, the first one's secret wins."""
    tmp_path = _written_aside(path, data)
    try:
        os.link(tmp_path, path)
    except FileExistsError:
        return False
    finally:
        tmp_path.unlink(missing_ok=True)
    return True


def replace_private_file(path: Path, data: bytes) -> None:
    """Write ``data`` to a 0600 file at ``path``, replacing it whole: a reader sees the old
    bytes or the new ones, never a mix."""
    tmp_path = _written_aside(path, data)
    try:
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def _written_aside(path: Path, data: bytes) -> Path:
    """A new 0600 file beside ``path`` holding ``data``, flushed to disk."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp_path = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return tmp_path
