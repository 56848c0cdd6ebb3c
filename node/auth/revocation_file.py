"""Revocations on disk: the node's own record of every revocation it knows, beyond Redis.

One JSON line per revocation, ``{"token_hash": ..., "expires": epoch seconds}``, appended and
synced before ``/auth/revoke`` answers, in a 0600 file in the data directory. Restoring reads it
back (keeping each revocation's expiry) and writes it again compacted: expired lines dropped,
each hash once with its latest expiry. Blocking: call from a thread.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path

from node.private_files import replace_private_file

log = logging.getLogger(__name__)

REVOCATIONS_FILE = "revocations.jsonl"

Revoked = dict[str, float]  # token hash -> when its revocation expires (epoch seconds)


class RevocationFile:
    """Appends revocations durably; reads them back."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / REVOCATIONS_FILE

    def append(self, revoked: Mapping[str, float]) -> None:
        """Add revocations and sync them to disk (the file and, when new, its directory)."""
        if not revoked:
            return
        lines = "".join(_line(token_hash, expires) for token_hash, expires in revoked.items())
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        created = not self.path.exists()
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(self.path, flags, 0o600)
        try:
            os.fchmod(fd, 0o600)  # whatever umask or hand made it
            os.write(fd, lines.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:  # the file's name is durable only once its directory is
            _sync_directory(self.path.parent)

    def read(self, now: float | None = None) -> Revoked:
        """Every revocation not yet expired, each hash with its latest expiry; {} if none.
        A line that cannot be read (a write cut short by a crash) is skipped."""
        now = time.time() if now is None else now
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        revoked: Revoked = {}
        for number, line in enumerate(text.splitlines(), start=1):
            entry = _parse(line)
            if entry is None:
                if line.strip():
                    log.warning("%s line %d is not a revocation; skipped", self.path, number)
                continue
            token_hash, expires = entry
            if expires > now:
                revoked[token_hash] = max(expires, revoked.get(token_hash, 0.0))
        return revoked

    def rewrite(self, revoked: Mapping[str, float]) -> None:
        """Replace the file with exactly ``revoked`` (compaction), atomically."""
        data = "".join(_line(token_hash, expires) for token_hash, expires in sorted(revoked.items()))
        replace_private_file(self.path, data.encode())
        _sync_directory(self.path.parent)


def _line(token_hash: str, expires: float) -> str:
    return json.dumps({"token_hash": token_hash, "expires": round(expires, 3)}, separators=(",", ":")) + "\n"


def _parse(line: str) -> tuple[str, float] | None:
    try:
        entry = json.loads(line)
        token_hash, expires = entry["token_hash"], float(entry["expires"])
    except (ValueError, TypeError, KeyError):
        return None
    if not isinstance(token_hash, str) or len(token_hash) != 64:
        return None
    return token_hash, expires


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
