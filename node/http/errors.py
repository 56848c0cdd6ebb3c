"""The one error shape, and the middleware that is the only place errors become statuses.

``{"error": {"code": "not_found", "message": "...", "details": {...}}}``
"""

from __future__ import annotations

import http
import logging
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from node.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NodeError,
    NotFound,
    RangeNotSatisfiable,
    RequestTimeout,
    TooLarge,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    UnsupportedMedia,
    Upstream,
)

log = logging.getLogger(__name__)

STATUS_BY_KIND: dict[type[NodeError], int] = {
    InvalidInput: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    RequestTimeout: 408,
    Conflict: 409,
    TooLarge: 413,
    UnsupportedMedia: 415,
    RangeNotSatisfiable: 416,
    TooManyRequests: 429,
    Upstream: 502,
    Unavailable: 503,
}
_OWN_CODES = {413: TooLarge.code, 408: RequestTimeout.code}
# Headers of an aiohttp HTTPException worth keeping on the JSON error (e.g. Allow on a 405).
_KEPT_HEADERS = ("Allow", "WWW-Authenticate", "Retry-After", "Location")
INTERNAL_MESSAGE = "internal error; the node's log has the details"


def status_for(error: NodeError) -> int:
    """The HTTP status of an error: that of the nearest kind it belongs to, else 500."""
    for cls in type(error).__mro__:
        if cls in STATUS_BY_KIND:
            return STATUS_BY_KIND[cls]
    return 500


def error_response(
    status: int, code: str, message: str, details: dict[str, Any] | None = None, **kwargs: Any
) -> web.Response:
    """A JSON response in the node's one error shape."""
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    return web.json_response(body, status=status, **kwargs)


def code_for_status(status: int) -> str:
    """The error code of a bare HTTP status: its phrase in snake case (``not_found``), or the
    node's own code where it has one (413 is ``too_large`` whoever refuses the body)."""
    if status in _OWN_CODES:
        return _OWN_CODES[status]
    try:
        return http.HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render every failure of a handler in the error shape; never leak a traceback."""
    try:
        return await handler(request)
    except NodeError as exc:
        status = status_for(exc)
        if status >= 500:
            log.warning("%s %s -> %d %s: %s", request.method, request.path, status, exc.code, exc.message)
        return error_response(status, exc.code, exc.message, exc.details, headers=exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and other non-errors pass through untouched
        headers = {name: exc.headers[name] for name in _KEPT_HEADERS if name in exc.headers}
        message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        return error_response(exc.status, code_for_status(exc.status), message, headers=headers)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", INTERNAL_MESSAGE)
