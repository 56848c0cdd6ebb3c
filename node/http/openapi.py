"""The API's OpenAPI 3.1 document, built from the routes and what each handler declares.

Every handler carries its own description (``@operation(...)`` right above it: summary,
parameters, body, responses), and :func:`document` walks the router, so a route cannot exist
without being described, nor be described without existing (``tests/test_openapi.py`` checks
both, and the fuzzer checks each answer against its schema). Schemas live in ``schemas``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from node import __version__
from node.http import schemas
from node.http.ui.templating import is_page

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ERROR_DESCRIPTIONS = {
    400: "The request is invalid (`details.field` names what is wrong), or not HTTP this node "
    "reads (`bad_request`: a URL over 16 KiB, a header over 8190 bytes).",
    401: "A token is needed (`Authorization: Bearer ...`).",
    403: "Not allowed for this user, or the path is outside the allowed roots.",
    404: "No such thing on this node.",
    408: "The client stopped sending its request.",
    409: "Conflicts with the current state (in use, running, name taken).",
    413: "Over a size limit (too_large), or past the user's stored-bytes quota (quota_exceeded).",
    415: "Not media this node reads.",
    416: "The range is outside the content.",
    429: "Over a per-user limit (rate_limited, too_many_runs); try again after Retry-After seconds.",
    502: "A dependency answered wrongly.",
    503: "Redis or IPFS is unavailable.",
}
WRITE_METHODS = frozenset({"post", "put", "patch", "delete"})
RETRY_AFTER = {
    "Retry-After": {"description": "seconds to wait before trying again", "schema": {"type": "integer"}}
}
_PATH_PARAMETER = re.compile(r"{(\w+)}")
HEAD_DOCUMENTED = {"cache-get"}  # routes whose HEAD clients use (size and type before download)


@dataclass(frozen=True)
class Operation:
    """What one handler does, takes and answers, in OpenAPI terms."""

    summary: str
    tag: str
    responses: Mapping[int, dict[str, Any]]  # status -> {"description", "content"}
    errors: tuple[int, ...] = ()
    query: tuple[dict[str, Any], ...] = ()
    body: dict[str, Any] | None = None  # requestBody
    auth: bool = False
    headers: tuple[dict[str, Any], ...] = ()
    description: str = ""

    def spec(self, path_parameters: list[str], operation_id: str, method: str = "get") -> dict[str, Any]:
        parameters = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": schemas.PATH_PARAMETERS[name],
            }
            for name in path_parameters
        ]
        parameters += [*self.query, *self.headers]
        errors = sorted(
            {
                *self.errors,
                400,  # any request whose head does not parse (node.http.serving), or malformed
                503,  # Redis or IPFS can be down for any request
                *((401,) if self.auth else ()),
                *((404,) if path_parameters else ()),
                *((408, 413) if self.body is not None else ()),
                *((429,) if self.auth and method in WRITE_METHODS else ()),  # ARTDAG_RATE_LIMIT
            }
        )
        responses: dict[str, Any] = {str(status): dict(answer) for status, answer in self.responses.items()}
        for status in errors:
            responses[str(status)] = {
                "description": ERROR_DESCRIPTIONS[status],
                "content": schemas.json_of(schemas.ERROR),
                **({"headers": RETRY_AFTER} if status in (429, 503) else {}),
            }
        spec: dict[str, Any] = {
            "operationId": operation_id,
            "summary": self.summary,
            "tags": [self.tag],
            "parameters": parameters,
            "responses": responses,
        }
        if self.description:
            spec["description"] = self.description
        if self.body is not None:
            spec["requestBody"] = self.body
        if self.auth:
            spec["security"] = [{"bearer": []}]
        return spec


def operation(
    summary: str, tag: str, responses: Mapping[int, dict[str, Any]], **details: Any
) -> Callable[[Handler], Handler]:
    """Describe the handler below (see :class:`Operation` for the fields)."""
    described = Operation(summary, tag, responses, **details)

    def attach(handler: Handler) -> Handler:
        handler.__openapi__ = described  # type: ignore[attr-defined]
        return handler

    return attach


def described(handler: Any) -> Operation | None:
    """The operation a handler declares, if any."""
    found = getattr(handler, "__openapi__", None)
    return found if isinstance(found, Operation) else None


def is_api_route(route: web.AbstractRoute) -> bool:
    """Whether a route is part of the API: not the docs' files (their script and assets) or the
    web UI's, nor a page."""
    path = route.resource.canonical if route.resource is not None else ""
    return bool(path) and not path.startswith(("/docs/", "/static")) and not is_page(route.handler)


def document(app: web.Application) -> dict[str, Any]:
    """The OpenAPI document of ``app``'s routes; KeyError naming a route nobody described."""
    paths: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        if not is_api_route(route):
            continue
        path = route.resource.canonical if route.resource is not None else ""
        if route.method == "HEAD" and route.name not in HEAD_DOCUMENTED:
            continue  # aiohttp answers HEAD for every GET; only where it matters is it described
        found = described(route.handler)
        if found is None:
            raise KeyError(f"{route.method} {path} has no @operation")
        method = route.method.lower()
        operation_id = f"{method}_{route.name or path}".replace("-", "_")
        spec = found.spec(_PATH_PARAMETER.findall(path), operation_id, method)
        if method == "head":  # the same answers without their bodies
            spec["responses"] = {
                status: {"description": told["description"]} for status, told in spec["responses"].items()
            }
        paths.setdefault(path, {})[method] = spec
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Art DAG L1 node",
            "version": __version__,
            "description": "Renders media through content-addressed DAG recipes; every input and output "
            "is in IPFS; every run ends in a signed provenance record. Errors are always "
            '`{"error": {"code", "message", "details"}}`; a method a path lacks is 405 '
            "`method_not_allowed` with `Allow` naming exactly the path's methods.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": schemas.COMPONENTS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
