"""The web UI's routes. Pages that share a path with the JSON API (``/``, ``/runs``,
``/recipes``) are chosen by ``Accept`` where the API routes are registered (``negotiated``)."""

from __future__ import annotations

from aiohttp import web

from node.http.ui import client, media, recipes, render, run_pages


def add_routes(app: web.Application) -> None:
    render.setup(app)
    client.setup(app)
    app.router.add_get("/run/{run_id}", run_pages.run_page, name="page-run")
    app.router.add_get("/recipe/{id}", recipes.recipe_page, name="page-recipe")
    app.router.add_get("/media", media.media_page, name="page-media")
    app.router.add_get("/download/client", client.client_page, name="page-client")
    app.router.add_get(f"/download/{client.CLIENT_FILE}", client.download, name="client-download")
