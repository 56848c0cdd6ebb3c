"""Errors of the IPFS-backed content store."""

from __future__ import annotations

from node.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    RequestTimeout,
    TooLarge,
    Unavailable,
    UnsupportedMedia,
    Upstream,
)


class IpfsUnavailable(Unavailable):
    code = "ipfs_unavailable"


class IpfsTimeout(IpfsUnavailable):
    code = "ipfs_timeout"


class IpfsError(Upstream):
    """The daemon answered, but with an error we did not expect."""

    code = "ipfs_error"


class ContentNotFound(NotFound):
    code = "not_found"


class InvalidCid(InvalidInput):
    code = "invalid_cid"


class IntegrityError(Upstream):
    """Bytes read back from IPFS do not hash to the content id they were stored under."""

    code = "integrity_error"


class UploadTooLarge(TooLarge):
    code = "too_large"

    @classmethod
    def over(cls, limit: int) -> UploadTooLarge:
        return cls(f"upload exceeds the limit of {limit} bytes (ARTDAG_MAX_UPLOAD)", limit=limit)


class QuotaExceeded(TooLarge):
    """Storing more would take a user past ``ARTDAG_QUOTA_BYTES`` (nothing was stored)."""

    code = "quota_exceeded"

    @classmethod
    def over(cls, used: int, quota: int, adding: int | None = None) -> QuotaExceeded:
        what = f"{size_text(adding)} more" if adding is not None else "this"
        return cls(
            f"you store {size_text(used)} of your {size_text(quota)} quota (ARTDAG_QUOTA_BYTES), and {what} "
            "would pass it: delete something you own (DELETE /cache/{cid}) or a run you keep "
            "(DELETE /runs/{run_id}), or ask the operator for more",
            used=used,
            quota=quota,
            size=adding,
        )


def size_text(size: int) -> str:
    """``1.9 GB``, ``512 kB``, ``80 B``: a size in decimal units, as people read them."""
    for unit, scale in (("TB", 1000**4), ("GB", 1000**3), ("MB", 1000**2), ("kB", 1000)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} B"


class InvalidUpload(InvalidInput):
    code = "invalid_upload"


class AssetNameTaken(Conflict):
    """An asset name already names other content."""

    code = "asset_exists"


class ContentBusy(Unavailable):
    """Another request holds the content's lock for longer than we wait."""

    code = "content_busy"


class UploadStalled(RequestTimeout):
    code = "upload_stalled"


class ContentInUse(Conflict):
    """Content a run still uses (input or output) cannot be deleted."""

    code = "content_in_use"


class NotOwner(Forbidden):
    code = "forbidden"


class ContentTooLarge(TooLarge):
    """Content read whole (records, recipes) is larger than such content may be."""

    code = "too_large"


class NoThumbnail(UnsupportedMedia):
    """Content that has no thumbnail: not an image, a video nor audio, or unreadable as one."""

    code = "unsupported_media"


class ThumbnailTimeout(Unavailable):
    """A thumbnail took longer to make than it may."""

    code = "thumbnail_timeout"
