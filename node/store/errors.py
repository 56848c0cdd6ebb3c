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
