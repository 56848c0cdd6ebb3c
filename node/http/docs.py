"""``GET /openapi.json`` and ``GET /docs``: the API describing itself, and Swagger UI to try it.

The UI's assets come from the ``swagger-ui-py`` package (Swagger UI 5, which reads OpenAPI
3.1) and are served by the node itself under ``/docs/assets/``: no CDN, works offline. A
Content-Security-Policy keeps the page from reaching anything but this node (Swagger UI would
otherwise ask validator.swagger.io about the document).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from aiohttp import web

from node.http.openapi import document, operation
from node.http.schemas import answer

ASSETS = Path(str(resources.files("swagger_ui") / "static"))  # files of the swagger-ui-py package
DOCS_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Art DAG L1 node API</title>
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
  <link rel="icon" type="image/png" href="/docs/assets/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script src="/docs/init.js"></script>
</body>
</html>
"""
DOCS_SCRIPT = """window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout"
});
"""
DOCS_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "connect-src 'self'; frame-ancestors 'none'"
)
OPENAPI = web.AppKey("openapi", bytes)  # the document, encoded once


@operation(
    "This API as an OpenAPI 3.1 document",
    "node",
    {200: answer("The document", {"type": "object", "required": ["openapi", "paths"]})},
)
async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI], content_type="application/json")


@operation(
    "Interactive API documentation (Swagger UI)",
    "node",
    {200: {"description": "An HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}},
)
async def docs(request: web.Request) -> web.Response:
    return web.Response(
        text=DOCS_PAGE, content_type="text/html", headers={"Content-Security-Policy": DOCS_POLICY}
    )


async def docs_script(request: web.Request) -> web.Response:
    """``/docs/init.js``: the script that starts Swagger UI on /openapi.json (a file of the
    docs page, not an operation of the API)."""
    return web.Response(text=DOCS_SCRIPT, content_type="text/javascript")


def add_routes(app: web.Application) -> None:
    """The documentation's routes; call it after every other route is added: the document is
    built here, once, from the router."""
    app.router.add_get("/openapi.json", openapi, name="openapi")
    app.router.add_get("/docs", docs, name="docs")
    app.router.add_get("/docs/init.js", docs_script, name="docs-script")
    app.router.add_static("/docs/assets", ASSETS, name="docs-assets")
    app[OPENAPI] = json.dumps(document(app)).encode()
