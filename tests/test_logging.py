"""Structured logs (ARTDAG_LOG_FORMAT=json): one JSON object a line, with the node, run and
step ids of the work that logged it; the access log stays free of tokens."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from node import logs
from node.http.access_log import AccessLogger
from node.pixels.imaging import png_bytes
from node.services import EmbeddedServices
from tests.conftest import node_process
from tests.helpers import Client, sse, start, upload, wait_until


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """The root logger writing JSON lines into a buffer, for the test; put back afterwards."""
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    buffer = io.StringIO()
    logs.configure("INFO", "json", buffer)
    try:
        yield buffer
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in before:
            root.addHandler(handler)
        root.setLevel(level)


def parsed(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


async def test_a_step_logs_its_run_step_and_node(
    json_lines: io.StringIO, client: Client, auth: dict[str, str]
) -> None:
    """The line a computed step logs carries the run id, the step's cache id and the node id,
    beside time, level, logger and message."""
    pixels = np.random.default_rng(7).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    image = await upload(client, auth, png_bytes(pixels))
    run = await start(client, auth, {"recipe": "invert", "inputs": [image["cid"]]})
    events = await sse(client, run["run_id"])
    finished = next(data for _, kind, data in events if kind == "step_finished")
    lines = parsed(json_lines)
    [computed] = [line for line in lines if "computed" in line["message"]]
    assert computed["run_id"] == run["run_id"]
    assert computed["step_id"] == finished["cache_id"]
    assert computed["node_id"] == finished["node"]
    assert computed["level"] == "INFO" and computed["logger"] == "node.executor.scheduler"
    assert computed["time"]


def test_text_lines_are_unchanged() -> None:
    """The default format is the plain line it always was, ids or not."""
    buffer = io.StringIO()
    handler = logs.configure("INFO", "text", buffer)
    try:
        logs.run_id.set("run-0000000000000000")
        logging.getLogger("node.example").info("hello %s", "there")
    finally:
        logging.getLogger().removeHandler(handler)
    assert buffer.getvalue().rstrip().endswith(" INFO node.example: hello there")


def test_the_access_log_is_token_free_in_json(json_lines: io.StringIO) -> None:
    """A login's auth_token is blanked in the message and in the JSON fields alike."""
    request = make_mocked_request("GET", "/auth?auth_token=s3cret-token&next=/runs")
    AccessLogger(logging.getLogger("aiohttp.access"), "").log(request, web.Response(status=302), 0.01)
    [line] = parsed(json_lines)
    assert "s3cret" not in json_lines.getvalue()
    assert line["path"] == "/auth?auth_token=-&next=%2Fruns" and line["status"] == 302


def test_a_node_process_logs_json_lines(daemons: EmbeddedServices, tmp_path: Path) -> None:
    """``python -m node`` with ARTDAG_LOG_FORMAT=json: every line it writes is JSON, and the
    line saying where it serves names the node."""
    with node_process(daemons, tmp_path, ARTDAG_LOG_FORMAT="json", ARTDAG_LOG_LEVEL="INFO") as node:
        node_id = node.wait_healthy()["node_id"]

        def serving() -> dict[str, Any] | None:
            lines = [json.loads(line) for line in node.log_path.read_text().splitlines() if line]
            return next((line for line in lines if line["message"].startswith("serving on")), None)

        line = wait_until(serving, timeout_s=30)
    assert line["node_id"] == node_id and line["logger"] == "node"
