"""The HTTP server around the app: limits on a request's head, and the node's one JSON error
shape for requests aiohttp cannot parse.

A request whose head does not parse (a URL over ``MAX_URL_BYTES``, a header over
``MAX_HEADER_BYTES``, broken syntax) never reaches the app or its error middleware: aiohttp
answers it from the connection itself, as ``text/plain``. :class:`NodeRunner` serves the app
with connections that answer those in the error shape too: 400 ``bad_request``, never an echo
of the request (a URL can carry a token).
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong

from node.http.errors import INTERNAL_MESSAGE, code_for_status, error_response

log = logging.getLogger(__name__)

MAX_URL_BYTES = 16 * 1024  # the request target (path and query): fits a 8 KiB token in /auth
MAX_HEADER_BYTES = 8190  # one header, name and value (aiohttp's default)


class _Connection(web.RequestHandler):
    """One client connection: what aiohttp answers by itself is answered in the error shape."""

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # too late for an answer: aiohttp breaks the connection
            return super().handle_error(request, status, exc, message)
        if status >= 500:
            log.error("error handling a request from %s", request.remote, exc_info=exc)
            response = error_response(status, "internal_error", INTERNAL_MESSAGE)
        else:
            log.info("unparseable request from %s: %s", request.remote, type(exc).__name__)
            response = error_response(status, code_for_status(status), _explained(exc))
        response.force_close()  # the parser cannot find where the next request starts
        return response


def _explained(exc: BaseException | None) -> str:
    if isinstance(exc, LineTooLong):
        return (
            f"the request's URL is over {MAX_URL_BYTES} bytes or one of its headers over "
            f"{MAX_HEADER_BYTES} bytes"
        )
    return f"malformed HTTP request ({type(exc).__name__ if exc else 'unreadable'})"


class _Server(web.Server):
    def __call__(self) -> web.RequestHandler:
        return _Connection(self, loop=self._loop, **self._kwargs)


class NodeRunner(web.AppRunner):
    """``web.AppRunner`` with the node's limits on a request's head, whose connections answer
    unparseable requests in the error shape."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        super().__init__(app, max_line_size=MAX_URL_BYTES, max_field_size=MAX_HEADER_BYTES, **kwargs)

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _Server  # the same server, making _Connection for each client
        return server
