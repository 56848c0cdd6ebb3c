"""The access log: one line per request, with secrets in the URL blanked (a login's
``auth_token`` must never reach a log file, text or JSON)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

SECRET_PARAMS = frozenset({"auth_token"})


def redacted(path_qs: str) -> str:
    """``path_qs`` with the value of every secret query parameter replaced by ``-``."""
    path, sep, query = path_qs.partition("?")
    if not sep:
        return path
    pairs = parse_qsl(query, keep_blank_values=True)
    return f"{path}?{urlencode([(name, '-' if name in SECRET_PARAMS else value) for name, value in pairs])}"


class AccessLogger(AbstractAccessLogger):
    """``client "METHOD path HTTP/x.y" status bytes seconds "User-Agent"``."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        version = f"{request.version.major}.{request.version.minor}"
        path = redacted(request.path_qs)
        self.logger.info(
            '%s "%s %s HTTP/%s" %d %d %.6fs "%s"',
            request.remote,
            request.method,
            path,
            version,
            response.status,
            response.body_length,
            time,
            request.headers.get("User-Agent", "-"),
            # Fields of their own in JSON lines (ARTDAG_LOG_FORMAT=json); the path redacted too.
            extra={
                "method": request.method,
                "path": path,
                "status": response.status,
                "seconds": round(time, 6),
            },
        )
