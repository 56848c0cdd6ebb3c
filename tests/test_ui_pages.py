"""The web UI's pages as HTML, without a browser: one path for pages and API by Accept, the
node's own assets only, errors as pages with the API's message, escaping, the plan drawn."""

from __future__ import annotations

import asyncio
import io
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import pytest
from markupsafe import escape
from PIL import Image

from node.http.appkeys import NODE
from node.http.openapi import document
from node.http.ui.client_page import CLIENT_FILE, build_bundle
from node.store.cid import leaf_cid
from tests.helpers import Client, start, upload
from tests.media import pattern_clip, tone

HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}  # as Chromium sends
PAGES = ("/", "/runs", "/recipes", "/media", "/download/client")
ATTRIBUTE_URL = re.compile(r'(?:src|href|action|data-api|data-events)="([^"]*)"')


def png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (seed % 256, 80, 160)).save(buffer, format="PNG")
    return buffer.getvalue()


async def page_text(client: Client, path: str, status: int = 200, **headers: str) -> str:
    response = await client.get(path, headers={**HTML, **headers})
    body = await response.text()
    assert response.status == status, body
    assert response.content_type == "text/html"
    return body


async def test_shared_paths_choose_page_or_json_by_accept(client: Client) -> None:
    """/, /runs and /recipes answer browsers with a page and API clients with JSON; both vary on
    Accept."""
    for path in ("/", "/runs", "/recipes"):
        page = await client.get(path, headers=HTML)
        assert page.content_type == "text/html"
        assert "<!doctype html>" in await page.text()
        assert "Accept" in page.headers["Vary"]
        for accept in ("*/*", "application/json", "application/json, text/html;q=0.5"):
            api = await client.get(path, headers={"Accept": accept})
            assert api.content_type == "application/json", (path, accept)
            assert "Accept" in api.headers["Vary"]
            await api.json()


async def test_pages_load_only_the_nodes_own_assets(client: Client) -> None:
    """Every page refers only to this node's paths (no CDN), under a CSP that allows nothing else,
    and every static asset it names is served."""
    settings = client.app[NODE].settings
    allowed_absolute = {settings.public_url, *settings.l2_trusted}
    assets: set[str] = set()
    for path in PAGES:
        response = await client.get(path, headers=HTML)
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        body = await response.text()
        for url in ATTRIBUTE_URL.findall(body):
            assert url.startswith(("/", "#", "?")) or url in allowed_absolute, f"{path} names {url}"
            if url.startswith("/static/"):
                assets.add(url)
        assert "<script>" not in body and " style=" not in body  # nothing inline: the CSP forbids it
    assert {re.sub(r"\?.*", "", asset) for asset in assets} >= {"/static/app.css", "/static/app.js"}
    for asset in assets:
        response = await client.get(asset)
        assert response.status == 200, asset


async def test_header_says_who_is_logged_in(client: Client, auth: dict[str, str]) -> None:
    """Anonymous pages say Not logged in; after /auth the header names the user and offers Log out."""
    for path in PAGES:
        assert "Not logged in" in await page_text(client, path)
    token = auth["Authorization"].split()[1]
    response = await client.get(f"/auth?auth_token={token}", allow_redirects=False)
    assert response.status == 302
    body = await page_text(client, "/media")
    assert "Not logged in" not in body
    assert "Logged in as <strong>admin</strong>" in body and 'href="/logout"' in body


async def test_errors_are_pages_with_the_api_message(client: Client) -> None:
    """A browser gets an error page carrying the API's status and message; an API client still
    gets the JSON error shape for the same request."""
    cases = {
        "/no/such/page": (404, "There is no page at /no/such/page."),
        "/run/run-0123456789abcdef": (404, "no run &#39;run-0123456789abcdef&#39;"),
        "/runs?status=bogus": (400, "status must be one of queued, running, completed, failed, cancelled"),
        "/media?kind=pdf": (400, "kind must be one of image, video, audio"),
        f"/recipe/{leaf_cid(b'never stored')}": (404, leaf_cid(b"never stored")),
        "/recipe/not-a-cid": (400, "not-a-cid"),
    }
    for path, (status, message) in cases.items():
        body = await page_text(client, path, status)
        assert message in body, body
        assert "Traceback" not in body and 'class="site-header"' in body
    api = await client.get("/runs?status=bogus", headers={"Accept": "application/json"})
    assert api.status == 400
    assert (await api.json())["error"]["details"]["field"] == "status"


async def test_user_text_is_escaped(client: Client, auth: dict[str, str]) -> None:
    """Text a user chose (an output name) is escaped on every page that shows it."""
    image = await upload(client, auth, png(1))
    run = await start(
        client,
        auth,
        {"recipe": "invert", "inputs": [image["cid"]], "output_name": "<b>bold & more"},
    )
    for path in ("/runs", f"/run/{run['run_id']}"):
        body = await page_text(client, path)
        assert "<b>bold" not in body
        assert "&lt;b&gt;bold &amp; more" in body


async def test_run_page_draws_the_plan_with_states(client: Client, auth: dict[str, str]) -> None:
    """The run page draws each step of the plan as a box with its state and a table row, and
    links its output, provenance and attestation once complete."""
    image = await upload(client, auth, png(2))
    recipe = (
        "name: two\nversion: '1'\ndag:\n  nodes:\n"
        "    - {id: photo, type: SOURCE, config: {input: true, name: photo}}\n"
        "    - {id: flip, type: EFFECT, config: {effect: invert}, inputs: [photo]}\n"
        "    - {id: grey, type: EFFECT, config: {effect: grayscale}, inputs: [flip]}\n"
        "    - {id: soft, type: EFFECT, config: {effect: blur, params: {sigma: 8}}, inputs: [grey]}\n"
        "  output: soft\n"
    )
    stored = await client.post(
        "/recipes/upload", data=recipe, headers={**auth, "Content-Type": "application/x-yaml"}
    )
    assert stored.status == 201
    run = await start(client, auth, {"recipe": (await stored.json())["id"], "inputs": [image["cid"]]})
    record: Mapping[str, Any] = await client.app[NODE].run_manager.wait(run["run_id"])
    body = await page_text(client, f"/run/{run['run_id']}")
    assert body.count('class="dag-step') == 4
    for step, state in (("photo", "source"), ("flip", "done"), ("grey", "done"), ("soft", "done")):
        assert re.search(rf'class="dag-step [^"]*state-{state}[^"]*" data-step="{step}"', body), step
        assert f'data-step-row="{step}"' in body
    assert 'data-step="soft"' in body and "is-output" in body
    assert "<td>blur: sigma 8</td>" in body  # what each step ran with, and how long it took
    assert re.search(r"data-ran-cell>\d+\.\d s<", body) and "data-run-times>queued " in body
    assert f'src="/cache/{record["output"]["cid"]}"' in body
    assert f'data-verify="/provenance/{record["provenance_cid"]}/verify"' in body
    assert f'href="/runs/{run["run_id"]}/attestation"' in body  # and its in-toto/SLSA attestation
    assert "data-reexecute=" not in body  # starting a re-execution needs a signed-in user
    signed_in = await page_text(client, f"/run/{run['run_id']}", 200, **auth)
    assert f'data-reexecute="/provenance/{record["provenance_cid"]}/reexecute"' in signed_in
    assert "data-events=" not in body  # finished: nothing to follow
    recipe_page = await page_text(client, f"/recipe/{(await stored.json())['id']}")
    assert recipe_page.count('class="dag-step') == 4 and "effect: invert" in recipe_page


async def test_built_in_effects_take_params(client: Client, auth: dict[str, str]) -> None:
    """POST /runs takes a built-in effect's params (as the run forms send them), checked against
    the effect's schema and named as the request names them."""
    image = await upload(client, auth, png(3))
    run = await start(client, auth, {"recipe": "blur", "inputs": [image["cid"]], "params": {"sigma": 3}})
    record: Mapping[str, Any] = await client.app[NODE].run_manager.wait(run["run_id"])
    plan = await (await client.get(f"/cache/{record['plan_cid']}")).json()
    assert [step["config"]["params"] for step in plan["steps"] if step["type"] == "EFFECT"] == [
        {"sigma": 3.0}
    ]
    for params, recipe, field in (
        ({"sigma": 500}, "blur", "params.sigma"),
        ({"radius": 1}, "blur", "params.radius"),
        ([1], "blur", "params"),
        ({"sigma": 1}, record["recipe"]["cid"], "params"),
    ):
        response = await client.post(
            "/runs", json={"recipe": recipe, "inputs": [image["cid"]], "params": params}, headers=auth
        )
        assert response.status == 400, await response.text()
        assert (await response.json())["error"]["details"]["field"] == field


def test_client_bundle_runs(tmp_path: Path) -> None:
    """The downloadable client is a zip application that starts (with its packages installed)."""
    bundle = tmp_path / CLIENT_FILE
    bundle.write_bytes(build_bundle())
    assert build_bundle() == bundle.read_bytes()  # the same code gives the same bytes
    shown = subprocess.run(
        [sys.executable, str(bundle), "--help"], capture_output=True, text=True, check=True
    )
    assert "usage: artdag" in shown.stdout


async def test_openapi_leaves_pages_out(client: Client) -> None:
    """The API document describes the API, not the pages nor their assets."""
    paths = document(client.app)["paths"]
    assert "/runs" in paths and "/" in paths
    assert not {"/media", "/run/{run_id}", "/recipe/{id}", "/download/client"} & set(paths)
    assert not any(path.startswith("/static") for path in paths)


@pytest.mark.parametrize("path", PAGES)
async def test_pages_render_with_content(client: Client, auth: dict[str, str], path: str) -> None:
    """Each page renders with its heading and navigation, current page marked."""
    await upload(client, auth, png(4), name="sample")
    body = await page_text(client, path)
    assert "<h1" in body and 'aria-current="page"' in body and 'href="#main"' in body


async def test_forgotten_recipe_and_lost_events_still_render(client: Client, auth: dict[str, str]) -> None:
    """A run's recipe page still shows a recipe forgotten since (its YAML as uploaded), and a run
    whose events are gone (restored from a published state) shows its steps as the step index
    knows them: done, and by which node."""
    image = await upload(client, auth, png(5))
    recipe = (
        "name: solo\nversion: '1'\ndag:\n  nodes:\n"
        "    - {id: photo, type: SOURCE, config: {input: true, name: photo}}\n"
        "    - {id: flip, type: EFFECT, config: {effect: invert}, inputs: [photo]}\n"
        "  output: flip\n"
    )
    stored = await (await client.post("/recipes/upload", data=recipe, headers=auth)).json()
    run = await start(client, auth, {"recipe": stored["id"], "inputs": [image["cid"]]})
    await client.app[NODE].run_manager.wait(run["run_id"])
    assert (await client.delete(f"/recipes/{stored['id']}", headers=auth)).status == 200
    body = await page_text(client, f"/recipe/{stored['id']}")
    assert "effect: invert" in body and "Forget this recipe" not in body

    await client.app[NODE].redis.delete(client.app[NODE].keys.events(run["run_id"]))
    body = await page_text(client, f"/run/{run['run_id']}")
    node_id = client.app[NODE].identity.node_id
    assert re.search(r'class="dag-step [^"]*state-done[^"]*" data-step="flip"', body)
    assert f'<code title="{node_id}">' in body


async def test_auth_errors_reach_a_browser_as_a_page(client: Client) -> None:
    """A bad token at /auth shows a browser the API's 401 message as a page; the API still
    answers JSON."""
    body = await page_text(client, "/auth?auth_token=bogus", 401)
    api = await client.get("/auth?auth_token=bogus")
    assert api.status == 401
    assert str(escape((await api.json())["error"]["message"])) in body


async def test_run_page_previews_video_and_audio_and_shows_errors(
    client: Client, auth: dict[str, str], tmp_path: Path
) -> None:
    """A video output gets a video player, an audio output an audio player, and a failed run its
    error and the failing step's error."""
    clip = await upload(
        client, auth, (await asyncio.to_thread(pattern_clip, tmp_path / "c.mp4", seconds=1.0)).read_bytes()
    )
    video = await start(client, auth, {"recipe": "invert", "inputs": [clip["cid"]]})
    record: Mapping[str, Any] = await client.app[NODE].run_manager.wait(video["run_id"])
    body = await page_text(client, f"/run/{video['run_id']}")
    assert f'<video src="/cache/{record["output"]["cid"]}" controls' in body

    sound = await upload(
        client, auth, (await asyncio.to_thread(tone, tmp_path / "t.wav", seconds=2.0)).read_bytes()
    )
    cut = (
        "name: cut\nversion: '1'\ndag:\n  nodes:\n"
        "    - {id: src, type: SOURCE, config: {input: true, name: src}}\n"
        "    - {id: cut, type: SEGMENT, config: {start: 0, end: 1}, inputs: [src]}\n"
        "  output: cut\n"
    )
    stored = await (await client.post("/recipes/upload", data=cut, headers=auth)).json()
    audio = await start(client, auth, {"recipe": stored["id"], "inputs": [sound["cid"]]})
    record = cast(Mapping[str, Any], await client.app[NODE].run_manager.wait(audio["run_id"]))
    assert record["status"] == "completed", record
    body = await page_text(client, f"/run/{audio['run_id']}")
    assert f'<audio src="/cache/{record["output"]["cid"]}" controls' in body

    whole = (tmp_path / "c.mp4").read_bytes()
    broken = await upload(client, auth, whole[: len(whole) // 3])
    failed = await start(client, auth, {"recipe": "invert", "inputs": [broken["cid"]]})
    record = await client.app[NODE].run_manager.wait(failed["run_id"])
    assert record["status"] == "failed"
    await client.get(f"/auth?auth_token={auth['Authorization'].split()[1]}", allow_redirects=False)
    body = await page_text(client, f"/run/{failed['run_id']}")
    assert 'id="error-heading"' in body and str(escape(record["error"])) in body
    assert f'data-api="/runs/{failed["run_id"]}/retry"' in body  # its owner may retry it
    assert re.search(
        r'data-step-row="invert">.*?state-failed.*?not a readable image, video or audio file', body, re.S
    )
