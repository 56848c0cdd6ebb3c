"""How pages are made: the Jinja environment, the choice between a page and the JSON API on a
shared path, and errors shown as pages with the API's message.

Pages are plain server-rendered HTML (readable without JavaScript); ``static/app.js`` adds live
updates and sends forms to the JSON API, so a page and the API never disagree on a rule.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp.typedefs import Handler

from node import __version__
from node.errors import NodeError
from node.http.appkeys import NODE
from node.http.errors import code_for_status, error_middleware, status_for
from node.http.ui import formats
from node.http.ui.users import current_user

log = logging.getLogger(__name__)

INTERNAL_ERROR = "internal error; the node's log has the details"
STATIC_DIR = Path(__file__).parent / "static"
PAGE_HEADERS = {
    # Everything a page loads comes from this node: no CDN, no inline script.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; media-src 'self'; "
    "style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "private, no-cache",
    "Vary": "Accept, Cookie",
}
NAV = (
    ("/", "Node"),
    ("/runs", "Runs"),
    ("/recipes", "Recipes"),
    ("/media", "Media"),
    ("/cluster", "Cluster"),
    ("/download/client", "Client"),
)
PageHandler = Callable[[web.Request], Awaitable[Mapping[str, Any]]]


def setup(app: web.Application) -> None:
    """Templates, their filters and the static assets (``/static/...``, versioned URLs)."""
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("node.http.ui", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a missing value is a bug to see, not an empty cell
        auto_reload=False,  # templates ship with the code: no stat of each one on every render
    )
    env.filters.update(formats.FILTERS)
    static = app.router.add_static("/static/", STATIC_DIR, name="static", append_version=True)
    # aiohttp hashes the file on every url_for: do it once here, not on each page's loop turn
    urls = {path.name: str(static.url_for(filename=path.name)) for path in STATIC_DIR.iterdir()}
    env.globals["static"] = urls.__getitem__
    # inside the error middleware: a browser's failed GET becomes a page before it becomes JSON
    app.middlewares.insert(app.middlewares.index(error_middleware) + 1, _html_errors)


async def _common(request: web.Request) -> dict[str, Any]:
    """What every page shows: who is logged in, where we are, what node this is."""
    user = await current_user(request)
    settings = request.app[NODE].settings
    nav = [{"href": href, "label": label, "current": _is_current(request.path, href)} for href, label in NAV]
    return {
        "user": user,
        "nav": nav,
        "version": __version__,
        "node_id": request.app[NODE].identity.node_id,
        "l2_servers": settings.l2_trusted,
        "local_mode": not settings.l2_trusted,
    }


def _is_current(path: str, href: str) -> bool:
    if href == "/":
        return path == "/"
    singular = href.rstrip("s")  # /run/{id} belongs to Runs, /recipe/{id} to Recipes
    return path == href or path.startswith((href + "/", singular + "/"))


def page(template: str) -> Callable[[PageHandler], Handler]:
    """A page handler returns its template's context; a NodeError becomes an error page with
    the API's status, code and message (never a traceback)."""

    def wrap(handler: PageHandler) -> Handler:
        @functools.wraps(handler)
        async def render(request: web.Request) -> web.StreamResponse:
            try:
                context = await handler(request)
                response = aiohttp_jinja2.render_template(
                    template, request, {**await _common(request), **context}
                )
            except NodeError as exc:
                return await error_page(request, status_for(exc), exc.code, exc.message)
            except Exception:  # a bug: the log has it, the page says so without a traceback
                log.exception("page %s failed", request.path)
                return await error_page(request, 500, "internal_error", INTERNAL_ERROR)
            response.headers.update(PAGE_HEADERS)
            return response

        render.__ui_page__ = True  # type: ignore[attr-defined]
        return render

    return wrap


async def error_page(request: web.Request, status: int, code: str, message: str) -> web.Response:
    """The error template with the API's error fields."""
    if status >= 500:
        log.warning("page %s -> %d %s: %s", request.path, status, code, message)
    context = {**await _common(request), "status": status, "code": code, "message": message}
    response = aiohttp_jinja2.render_template("error.html", request, context, status=status)
    response.headers.update(PAGE_HEADERS)
    return response


def is_page(handler: Any) -> bool:
    """Whether a route's handler is a page (the OpenAPI document leaves pages out)."""
    return bool(getattr(handler, "__ui_page__", False))


def wants_html(request: web.Request) -> bool:
    """Whether the client prefers HTML to JSON: browsers ask for text/html by name; API clients
    send ``*/*`` or ``application/json`` (which keep getting JSON)."""
    html, json_ = 0.0, 0.0
    for item in request.headers.get("Accept", "").split(","):
        kind, _, params = item.strip().partition(";")
        quality = _quality(params)
        if kind.strip().lower() == "text/html":
            html = max(html, quality)
        elif kind.strip().lower() in {"application/json", "application/*", "*/*"}:
            json_ = max(json_, quality)
    return html > 0 and html >= json_


def _quality(params: str) -> float:
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.strip() == "q":
            try:
                return min(max(float(value), 0.0), 1.0)
            except ValueError:
                return 0.0
    return 1.0


def negotiated(api: Handler, html: Handler) -> Handler:
    """One path for two audiences: the page for browsers, the JSON API (whose OpenAPI
    description this handler keeps) for everyone else. Both vary on Accept."""

    @functools.wraps(api)
    async def choose(request: web.Request) -> web.StreamResponse:
        if wants_html(request):
            return await html(request)
        response = await api(request)
        response.headers["Vary"] = ", ".join(filter(None, (response.headers.get("Vary"), "Accept")))
        return response

    return choose


@web.middleware
async def _html_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A browser's GET that fails (a path the node does not have, a bad ``/auth`` token, a
    JSON resource that is not there) gets a page with the API's message; other clients keep
    getting the JSON error from the error middleware around this one."""
    if request.method != "GET" or not wants_html(request):
        return await handler(request)
    missing = request.match_info.http_exception
    if missing is not None:
        message = f"There is no page at {request.path}." if missing.status == 404 else missing.reason
        return await error_page(request, missing.status, code_for_status(missing.status), message)
    try:
        return await handler(request)
    except NodeError as exc:
        return await error_page(request, status_for(exc), exc.code, exc.message)
