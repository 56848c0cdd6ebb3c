"""How much one put may store: the size limit, and what is left of its owner's quota."""

from __future__ import annotations

from dataclasses import dataclass

from node.errors import NodeError
from node.store.errors import QuotaExceeded, UploadTooLarge


@dataclass(frozen=True)
class Room:
    """A put's bounds: ``max_size`` bytes (``ARTDAG_MAX_UPLOAD`` or a record's bound), and, with
    a quota, the bytes its owner held when it began. The bound while streaming is a first
    answer; the commit decides again, atomically (``ContentIndex.put``), so two puts racing
    past the quota together cannot both be kept."""

    max_size: int
    quota: int = 0  # bytes the owner may hold in all; 0: no quota (the admin, or none set)
    used: int = 0

    @property
    def limit(self) -> int:
        """The most bytes this put may bring."""
        return min(self.max_size, self.quota - self.used) if self.quota else self.max_size

    def too_large(self, size: int | None = None) -> NodeError:
        """The error for a put past ``limit`` (``size``: its size, when known)."""
        if self.quota and self.quota - self.used < self.max_size:
            return QuotaExceeded.over(self.used, self.quota, size)
        return UploadTooLarge.over(self.max_size)

    def check(self, size: int | None, slack: int = 0) -> None:
        """Refuse now a put whose size (``size``, of which up to ``slack`` bytes may be framing)
        is known to be past ``limit``: before a byte of it is read."""
        if size is not None and size > self.limit + slack:
            raise self.too_large(size)
