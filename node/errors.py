"""The kinds of error the node reports; each package's ``errors.py`` subclasses these.

A kind says what went wrong in terms every caller understands (not found, bad input,
unavailable ...); ``node/http`` alone maps kinds to status codes. ``code`` is the stable,
machine-readable name clients see in ``{"error": {"code": ...}}``.
"""

from __future__ import annotations

from typing import Any, ClassVar


class NodeError(Exception):
    """Base of every error the node raises on purpose."""

    code: ClassVar[str] = "error"
    default_headers: ClassVar[dict[str, str]] = {}  # sent with the response (WWW-Authenticate ...)

    def __init__(self, message: str, *, headers: dict[str, str] | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = {**self.default_headers, **(headers or {})}


class InvalidInput(NodeError):
    code = "invalid_input"


class Unauthorized(NodeError):
    code = "unauthorized"
    default_headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": 'Bearer realm="artdag"'}


class Forbidden(NodeError):
    code = "forbidden"


class NotFound(NodeError):
    code = "not_found"


class Conflict(NodeError):
    code = "conflict"


class RequestTimeout(NodeError):
    """The client stopped sending a request it had started."""

    code = "request_timeout"


class TooLarge(NodeError):
    code = "too_large"


class Unavailable(NodeError):
    """A dependency (Redis, IPFS, a peer) cannot be reached or did not answer in time."""

    code = "unavailable"
    default_headers: ClassVar[dict[str, str]] = {"Retry-After": "5"}  # seconds: try again then


class TooManyRequests(NodeError):
    """The caller asks more than it may now (a rate, a number of things at once); it may ask
    again after ``Retry-After`` seconds."""

    code = "too_many_requests"


class UnsupportedMedia(NodeError):
    """Content that is not media this node reads (where media is needed)."""

    code = "unsupported_media"


class RangeNotSatisfiable(NodeError):
    code = "range_not_satisfiable"


class Upstream(NodeError):
    """A dependency answered, but wrongly (an error we did not expect, or bytes that lie)."""

    code = "upstream_error"
