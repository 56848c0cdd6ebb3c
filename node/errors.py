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

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidInput(NodeError):
    code = "invalid_input"


class Unauthorized(NodeError):
    code = "unauthorized"


class Forbidden(NodeError):
    code = "forbidden"


class NotFound(NodeError):
    code = "not_found"


class Conflict(NodeError):
    code = "conflict"


class TooLarge(NodeError):
    code = "too_large"


class Unavailable(NodeError):
    """A dependency (Redis, IPFS, a peer) cannot be reached or did not answer in time."""

    code = "unavailable"
