"""The web UI in a real browser: Debian's Chromium, driven by Playwright, against a node process
on the session's Redis and IPFS. Each test saves screenshots of the pages it visits under
``build/screenshots/`` (``ARTDAG_SCREENSHOTS`` moves them)."""

from __future__ import annotations

import io
import json
import os
import re
import urllib.error
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from node.services import EmbeddedServices
from node.testing import NodeProcess
from tests.conftest import node_process

CHROMIUM = "/usr/bin/chromium"
# As ../shared/notes/browser-and-media.md says: without the background-networking flags
# Chromium keeps trying hosts this machine cannot reach.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SCREENSHOTS = Path(os.environ.get("ARTDAG_SCREENSHOTS", "build/screenshots"))
WAIT_MS = 30_000  # for a render to finish or a page to update: generous for a loaded 2-core CI


@pytest.fixture(scope="module")
def ui_node(daemons: EmbeddedServices, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """A node with one step worker (so a test can hold a run back), on the session daemons."""
    with node_process(daemons, tmp_path_factory.mktemp("ui-node"), ARTDAG_WORKERS="1") as node:
        yield node


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    opened = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    opened.set_default_timeout(WAIT_MS)
    yield opened
    opened.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    """A page whose script errors fail the test (a console line about a refused request is not
    one: the API's refusals are expected in some tests)."""
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.on("dialog", lambda dialog: dialog.accept())  # the delete confirmations
    yield opened
    assert errors == [], f"script errors on the page: {errors}"


def log_in(page: Page, node: NodeProcess) -> None:
    """Local mode: the admin token logs a browser in through /auth, as an L2 token would."""
    page.goto(f"{node.url}/auth?auth_token={node.token()}")
    expect(page.locator(".session")).to_contain_text("Logged in as admin")


def screenshot(page: Page, name: str) -> None:
    """The whole page once its images have loaded (lazy ones too: scrolled into view first)."""
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    page.wait_for_function("() => [...document.images].every(img => img.complete)")
    page.evaluate("window.scrollTo(0, 0)")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def png_file(tmp_path: Path, name: str, seed: int, size: tuple[int, int] = (96, 64)) -> Path:
    """A small PNG of its own bytes (the seed makes different files different content)."""
    image = Image.new("RGB", size)
    image.putdata(
        [
            ((x * 7 + seed) % 256, (y * 5 + seed) % 256, (x + y + seed) % 256)
            for y in range(size[1])
            for x in range(size[0])
        ]
    )
    path = tmp_path / name
    image.save(path, format="PNG")
    return path


def api(node: NodeProcess, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    return node.call(method, path, data, **({"Content-Type": "application/json"} if data else {}))


def hold_the_worker(node: NodeProcess, cid: str) -> dict[str, Any]:
    """A run holding the node's one worker for a minute (six 10 s waits in a row), so a run
    submitted after it waits until the test cancels this one."""
    steps = "".join(
        f"    - {{id: hold{index}, type: EFFECT, config: {{effect: wait, seconds: 10}}, "
        f"inputs: [{previous}]}}\n"
        for index, previous in enumerate(["photo", *(f"hold{index}" for index in range(5))])
    )
    recipe = (
        "name: hold\nversion: '1'\ndag:\n  nodes:\n"
        "    - {id: photo, type: SOURCE, config: {input: true, name: photo}}\n"
        f"{steps}  output: hold5\n"
    )
    stored = node.call("POST", "/recipes/upload", recipe.encode(), **{"Content-Type": "application/x-yaml"})
    return dict(api(node, "POST", "/runs", {"recipe": stored["id"], "inputs": [cid]}))


def media_card(page: Page, cid: str) -> Any:
    return page.locator(f'.media-card[data-cid="{cid}"]')


def upload_on_media_page(page: Page, node: NodeProcess, path: Path, name: str) -> str:
    """Upload through the media page's form; the new card's CID."""
    page.goto(f"{node.url}/media")
    page.get_by_label("Image, video or audio file").set_input_files(str(path))
    page.get_by_label("Asset name").fill(name)
    page.get_by_role("button", name="Upload").click()
    card = page.locator(".media-card", has_text=name)
    expect(card).to_be_visible()
    return str(card.get_attribute("data-cid"))


def test_anonymous_pages_read_without_javascript(browser: Browser, ui_node: NodeProcess) -> None:
    """With JavaScript off and nobody logged in, every page renders its content, and the header
    says Not logged in."""
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        for path, heading in (
            ("/", "artdag-node"),
            ("/runs", "Runs"),
            ("/recipes", "Recipes"),
            ("/media", "Media"),
            ("/download/client", "client"),
        ):
            page.goto(f"{ui_node.url}{path}")
            expect(page.locator("h1")).to_contain_text(heading)
            expect(page.locator(".session")).to_have_text("Not logged in")
        page.goto(f"{ui_node.url}/recipes")
        expect(page.locator("#effect-dog summary")).to_contain_text("Difference of Gaussians")
        page.goto(f"{ui_node.url}/")
        expect(page.get_by_role("heading", name="Health")).to_be_visible()
        screenshot(page, "home-anonymous-no-js")
    finally:
        context.close()


def test_upload_render_watch_verify(page: Page, ui_node: NodeProcess, tmp_path: Path) -> None:
    """Upload an image on /media, start dog on it from /recipes, watch /run/{id} reach completion
    live (no reload), see the output preview and a verified provenance."""
    log_in(page, ui_node)
    cid = upload_on_media_page(page, ui_node, png_file(tmp_path, "kitten.png", seed=1), "kitten")
    thumbnail = media_card(page, cid).locator("img")
    expect(thumbnail).to_have_attribute("alt", "kitten")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=thumbnail.element_handle())
    screenshot(page, "media")

    blocker = hold_the_worker(ui_node, cid)  # so the run page is open before dog can start
    page.goto(f"{ui_node.url}/recipes")
    page.locator("#effect-dog summary").click()
    form = page.locator("#run-dog")
    form.get_by_label("Pick from media").select_option(cid)
    form.get_by_label("sigma (px)").fill("1.5")
    screenshot(page, "recipes")
    form.get_by_role("button", name="Render").click()
    page.wait_for_url(re.compile(r".*/run/run-[0-9a-f]{16}$"))
    run_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("h1 [data-status]")).to_have_text(re.compile("queued|running"))
    expect(page.locator('[data-step="dog"]')).to_have_class(re.compile(r"\bstate-pending\b"))
    page.evaluate("window.stillTheSamePage = true")  # gone if anything reloads the page
    screenshot(page, "run-waiting")

    api(ui_node, "POST", f"/runs/{blocker['run_id']}/cancel")
    expect(page.locator("h1 [data-status]")).to_have_text("completed")
    assert page.evaluate("window.stillTheSamePage") is True
    expect(page.locator('[data-step="dog"]')).to_have_class(re.compile(r"\bstate-done\b"))
    expect(page.locator("#run-progress")).to_have_attribute("value", "100")
    output = page.get_by_role("img", name=f"The output of {run_id}")
    expect(output).to_be_visible()
    page.wait_for_function("img => img.complete && img.naturalWidth === 96", arg=output.element_handle())

    record = api(ui_node, "GET", f"/runs/{run_id}")
    assert record["status"] == "completed"
    plan = api(ui_node, "GET", f"/cache/{record['plan_cid']}")
    assert [step["config"]["params"]["sigma"] for step in plan["steps"] if step["type"] == "EFFECT"] == [1.5]
    expect(page.locator("#run-output")).to_contain_text(record["output"]["cid"])
    page.reload()  # what happened, as the page shows it once the run is done
    row = page.locator('[data-step-row="dog"]')
    expect(row).to_contain_text("dog: sigma 1.5, k 1.6, gain 10")
    expect(row.locator("[data-ran-cell]")).to_have_text(re.compile(r"^\d+(\.\d)? s$"))
    expect(page.locator("[data-run-times]")).to_contain_text("took")
    page.get_by_role("link", name="Verify").click()
    expect(page.locator("[data-verdict]")).to_contain_text("Verified: signed by")
    page.get_by_role("button", name="Re-execute on this node").click()  # the step again, compared
    expect(page.locator("[data-reexecution]")).to_contain_text(
        "Reproduced: every step made the same CID here"
    )
    expect(page.locator("[data-reexecution] li")).to_have_text(["dog (EFFECT): reproduced"])
    screenshot(page, "run-completed")
    run_again_with_other_parameters(page, run_id)
    page.goto(f"{ui_node.url}/runs")
    listed = page.locator(f'tr[data-run="{run_id}"]')
    expect(listed.locator("[data-run-progress]")).to_contain_text("100%")
    expect(listed.locator("[data-run-took]")).to_have_text(re.compile(r"\d+(\.\d)? s"))


def run_again_with_other_parameters(page: Page, run_id: str) -> None:
    """A completed run's page offers its effect again, from its input and parameters: sigma 3
    instead of 1.5 renders a new run that shows sigma 3."""
    again = page.locator("#run-again")
    expect(again.get_by_label("sigma (px)")).to_have_value("1.5")
    again.get_by_label("sigma (px)").fill("3")
    again.get_by_role("button", name="Render").click()
    page.wait_for_url(lambda url: "/run/run-" in url and run_id not in url)
    expect(page.locator("h1 [data-status]")).to_have_text("completed")
    expect(page.locator('[data-step-row="dog"]')).to_contain_text("dog: sigma 3, k 1.6, gain 10")


def test_runs_list_updates_live(page: Page, ui_node: NodeProcess, tmp_path: Path) -> None:
    """A run started elsewhere appears on an open /runs page, and its status follows, without a
    reload."""
    log_in(page, ui_node)
    cid = ui_node.upload(png_file(tmp_path, "live.png", seed=2).read_bytes())["cid"]
    page.goto(f"{ui_node.url}/runs")
    page.evaluate("window.stillTheSamePage = true")
    run = api(ui_node, "POST", "/runs", {"recipe": "invert", "inputs": [cid]})
    row = page.locator(f'tr[data-run="{run["run_id"]}"]')
    expect(row).to_be_visible()
    expect(row.locator("[data-status]")).to_have_text("completed")
    expect(row.locator("img")).to_have_attribute("alt", f"output of {run['run_id']}")
    assert page.evaluate("window.stillTheSamePage") is True
    screenshot(page, "runs")


def test_delete_allowed_and_refused(page: Page, ui_node: NodeProcess, tmp_path: Path) -> None:
    """Media no run uses is deleted from its card; media a run uses shows why it cannot be, and a
    delete the API refuses shows the API's message."""
    log_in(page, ui_node)
    spare = upload_on_media_page(page, ui_node, png_file(tmp_path, "spare.png", seed=3), "spare")
    used = ui_node.upload(png_file(tmp_path, "used.png", seed=4).read_bytes())["cid"]
    run = api(ui_node, "POST", "/runs", {"recipe": "grayscale", "inputs": [used]})

    page.goto(f"{ui_node.url}/media")
    expect(media_card(page, used).locator(".refusal")).to_contain_text(
        f"content is used by 1 run(s) ({run['run_id']})"
    )
    expect(media_card(page, used).get_by_role("button", name=re.compile("Delete"))).to_have_count(0)
    screenshot(page, "media-delete-rules")

    # Still deletable when the page was drawn; a run takes it before the click.
    late = ui_node.upload(png_file(tmp_path, "late.png", seed=5).read_bytes())["cid"]
    page.reload()
    taken = api(ui_node, "POST", "/runs", {"recipe": "sepia", "inputs": [late]})
    media_card(page, late).get_by_role("button", name=re.compile("Delete")).click()
    error = media_card(page, late).get_by_role("alert")
    expect(error).to_have_text(
        re.compile(rf"content is used by 1 run\(s\) \({taken['run_id']}\); delete those first")
    )
    screenshot(page, "media-delete-refused")

    media_card(page, spare).get_by_role("button", name="Delete spare").click()
    expect(media_card(page, spare)).to_have_count(0)
    page.reload()
    expect(media_card(page, spare)).to_have_count(0)
    expect(media_card(page, late)).to_have_count(1)


def test_recipe_upload_run_and_delete(page: Page, ui_node: NodeProcess, tmp_path: Path) -> None:
    """A recipe YAML uploaded on /recipes lands on its page with its DAG drawn; it runs from
    there on a file uploaded in the run form; its finished run is deleted from the run page."""
    log_in(page, ui_node)
    photo = png_file(tmp_path, "recipe-input.png", seed=6)
    recipe = tmp_path / "two-steps.yaml"
    recipe.write_text(
        "name: two-steps\nversion: '1.0'\ndescription: Invert, then blur.\n"
        "dag:\n  nodes:\n"
        "    - {id: photo, type: SOURCE, config: {input: true, name: photo}}\n"
        "    - {id: flip, type: EFFECT, config: {effect: invert}, inputs: [photo]}\n"
        "    - {id: soft, type: EFFECT, config: {effect: blur, sigma: 1.0}, inputs: [flip]}\n"
        "  output: soft\n"
    )
    page.goto(f"{ui_node.url}/recipes")
    page.get_by_label("Recipe YAML file").set_input_files(str(recipe))
    page.get_by_role("button", name="Upload").click()
    page.wait_for_url(re.compile(r".*/recipe/[a-z0-9]+$"))
    expect(page.locator("h1")).to_contain_text("two-steps")
    expect(page.locator(".dag-step")).to_have_count(3)
    expect(page.locator("pre.code")).to_contain_text("effect: invert")
    screenshot(page, "recipe")

    page.get_by_label("or upload a file").set_input_files(str(photo))
    page.get_by_role("button", name="Render").click()
    page.wait_for_url(re.compile(r".*/run/run-[0-9a-f]{16}$"))
    expect(page.locator("h1 [data-status]")).to_have_text("completed")
    expect(page.locator(".dag-step.state-done")).to_have_count(2)
    run_id = page.url.rsplit("/", 1)[1]
    record = api(ui_node, "GET", f"/runs/{run_id}")
    uploaded = api(ui_node, "GET", "/cache?kind=image&limit=1000")["items"]
    assert record["inputs"][0]["content_id"] in {item["content_id"] for item in uploaded}
    page.get_by_role("button", name="Delete run").click()
    page.wait_for_url(re.compile(r".*/runs$"))
    expect(page.locator(f'tr[data-run="{run_id}"]')).to_have_count(0)


def test_form_errors_show_the_api_message(page: Page, ui_node: NodeProcess, tmp_path: Path) -> None:
    """A run the API refuses (its input was deleted after the page was drawn) shows the API's own
    message in the form; a missing run is a page with the API's message, not a stack trace."""
    log_in(page, ui_node)
    gone = ui_node.upload(png_file(tmp_path, "gone.png", seed=8).read_bytes())["cid"]
    page.goto(f"{ui_node.url}/recipes")
    api(ui_node, "DELETE", f"/cache/{gone}")
    with pytest.raises(urllib.error.HTTPError) as refused:
        api(ui_node, "POST", "/runs", {"recipe": "blur", "inputs": {"input": gone}})
    message = json.loads(refused.value.read())["error"]["message"]
    page.locator("#effect-blur summary").click()
    form = page.locator("#run-blur")
    form.get_by_role("button", name="Render").click()
    expect(form.get_by_role("alert")).to_have_text("Choose media or a file for input input.")
    form.get_by_label("Pick from media").select_option(gone)
    form.get_by_role("button", name="Render").click()
    expect(form.get_by_role("alert")).to_have_text(message)
    assert gone in message

    page.goto(f"{ui_node.url}/run/run-0123456789abcdef")
    expect(page.locator("h1")).to_have_text("404: run not found")
    expect(page.get_by_role("alert")).to_have_text("no run 'run-0123456789abcdef'")
    assert "Traceback" not in page.content()
    screenshot(page, "error")


def test_client_download(page: Page, ui_node: NodeProcess, tmp_path: Path) -> None:
    """/download/client explains the CLI and downloads it: a zip application with its entry point."""
    page.goto(f"{ui_node.url}/download/client")
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download artdag.pyz").click()
    saved = tmp_path / "artdag.pyz"
    download_info.value.save_as(saved)
    with zipfile.ZipFile(io.BytesIO(saved.read_bytes())) as bundle:
        names = set(bundle.namelist())
    assert {"__main__.py", "node/__init__.py", "node/cli/main.py"} <= names
    screenshot(page, "client")


# Colour arithmetic of WCAG 2.x, run in the page: relative luminance, contrast ratio, and the
# first opaque background behind an element.
COLOURS = r"""
  const channel = c => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
  const luminance = ([r, g, b]) => 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
  const rgba = text => (text.match(/[\d.]+/g) || []).map(Number);
  const background = element => {
    for (let at = element; at; at = at.parentElement) {
      const colour = rgba(getComputedStyle(at).backgroundColor);
      if (colour.length === 3 || colour[3] === 1) return colour.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const ratio = (one, other) => {
    const [a, b] = [luminance(one), luminance(other)];
    return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  };
"""
# Every element that holds text, against the background behind it: 4.5:1, or 3:1 for large
# text (24 px, or 18.66 px bold).
CONTRAST_PROBLEMS = (
    "() => {"
    + COLOURS
    + r"""
  const problems = [];
  for (const element of document.querySelectorAll("body *")) {
    const own = [...element.childNodes].some(node => node.nodeType === 3 && node.textContent.trim());
    const style = getComputedStyle(element);
    const shown = style.visibility !== "hidden" && style.display !== "none"
      && element.getClientRects().length;
    if (!own || !shown) continue;
    if (element.closest("svg, .visually-hidden, .skip-link")) continue;
    const contrast = ratio(rgba(style.color).slice(0, 3), background(element));
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
    const text = element.textContent.trim().slice(0, 30);
    if (contrast < (large ? 3 : 4.5)) problems.push(`${element.tagName} "${text}" ${contrast.toFixed(2)}`);
  }
  return problems;
}"""
)


def test_accessibility_basics(page: Page, ui_node: NodeProcess, tmp_path: Path) -> None:
    """On every page: the first Tab reaches the skip link, no element jumps the focus order, every
    form control has a label, every image a text alternative, and text has WCAG AA contrast."""
    log_in(page, ui_node)
    cid = ui_node.upload(png_file(tmp_path, "a11y.png", seed=7).read_bytes())["cid"]
    run = api(ui_node, "POST", "/runs", {"recipe": "invert", "inputs": [cid]})
    for path in ("/", "/runs", "/recipes", "/media", "/download/client", f"/run/{run['run_id']}", "/nowhere"):
        page.goto(f"{ui_node.url}{path}")
        page.keyboard.press("Tab")
        expect(page.locator(":focus")).to_have_text("Skip to content")
        assert page.locator("[tabindex]:not([tabindex='0']):not([tabindex='-1'])").count() == 0, path
        unlabelled = page.evaluate(
            """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
                 .filter(el => el.labels.length === 0 && !el.getAttribute('aria-label'))
                 .map(el => el.outerHTML)"""
        )
        assert unlabelled == [], f"{path}: {unlabelled}"
        no_alt = page.evaluate("() => [...document.images].filter(img => !img.hasAttribute('alt')).length")
        assert no_alt == 0, path
        assert page.evaluate(CONTRAST_PROBLEMS) == [], path
    # The contrast probe sees faint text when there is some.
    page.evaluate(
        """() => { const faint = document.createElement("p"); faint.textContent = "faint";
                   faint.style.color = "#bbbbbb"; document.querySelector("main").append(faint); }"""
    )
    assert [problem.split()[1] for problem in page.evaluate(CONTRAST_PROBLEMS)] == ['"faint"']


# WCAG 2.1 1.4.11: the focus ring of the focused element against what is behind it, 3:1.
FOCUS_RING_CONTRAST = (
    "() => {"
    + COLOURS
    + r"""
  const element = document.activeElement;
  const style = getComputedStyle(element);
  if (style.outlineStyle === "none" || parseFloat(style.outlineWidth) === 0) return 0;
  return ratio(rgba(style.outlineColor).slice(0, 3), background(element.parentElement));
}"""
)


def test_focus_is_visible(page: Page, ui_node: NodeProcess) -> None:
    """Every control Tab reaches on each page shows a focus ring with 3:1 contrast to what is
    behind it."""
    log_in(page, ui_node)
    for path in ("/", "/runs", "/recipes", "/media", "/download/client"):
        page.goto(f"{ui_node.url}{path}")
        for _ in range(20):
            page.keyboard.press("Tab")
            if page.evaluate("() => document.activeElement === document.body"):
                break  # past the last control
            where = page.evaluate("() => document.activeElement.outerHTML.slice(0, 80)")
            assert page.evaluate(FOCUS_RING_CONTRAST) >= 3, f"{path}: {where}"
