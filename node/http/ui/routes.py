"""The web UI's routes. Pages that share a path with the JSON API (``/``, ``/runs``,
``/recipes``) are chosen by ``Accept`` where the API routes are registered (``negotiated``)."""

from __future__ import annotations

from aiohttp import web

from node.http.ui import client_page, media_pages, recipe_pages, run_pages, templating


def add_routes(app: web.Application) -> None:
    templating.setup(app)
    client_page.setup(app)
    app.router.add_get("/run/{run_id}", run_pages.run_page, name="page-run")
    app.router.add_get("/recipe/{id}", recipe_pages.recipe_page, name="page-recipe")
    app.router.add_get("/media", media_pages.media_page, name="page-media")
    app.router.add_get("/download/client", client_page.client_page, name="page-client")
    app.router.add_get(f"/download/{client_page.CLIENT_FILE}", client_page.download, name="client-download")
