"""Requests whose head aiohttp cannot parse (a long URL, a long header, broken syntax) are
answered by a real node process in the one JSON error shape, never aiohttp's text/plain."""

from __future__ import annotations

import json
import socket
from typing import Any

from node.http.serving import MAX_HEADER_BYTES, MAX_URL_BYTES
from node.testing import NodeProcess


def raw_exchange(node: NodeProcess, head: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``head`` as it is; the status, headers (lower-case names) and body of the answer."""
    with socket.create_connection((node.host, node.port), timeout=30) as connection:
        connection.sendall(head)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    status_line, _, rest = received.partition(b"\r\n")
    header_block, _, body = rest.partition(b"\r\n\r\n")
    headers = {}
    for line in header_block.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def get(node: NodeProcess, target: str, *extra_headers: str) -> tuple[int, dict[str, str], bytes]:
    lines = [f"GET {target} HTTP/1.1", f"Host: {node.host}", "Connection: close", *extra_headers]
    return raw_exchange(node, ("\r\n".join(lines) + "\r\n\r\n").encode())


def error_of(headers: dict[str, str], body: bytes) -> dict[str, Any]:
    assert headers["content-type"].startswith("application/json"), (headers, body)
    answer = json.loads(body)
    assert set(answer) == {"error"} and set(answer["error"]) == {"code", "message", "details"}
    return dict(answer["error"])


def test_a_9000_character_query_is_answered_by_the_route(running_node: NodeProcess) -> None:
    """Under the URL limit (16 KiB), a long query reaches its route: here a filter that matches
    nothing, then a bad value, both JSON (aiohttp's own limit, 8190 bytes, answered text/plain)."""
    status, headers, body = get(running_node, "/runs?owner=" + "a" * 9000)
    assert status == 200 and headers["content-type"].startswith("application/json")
    assert json.loads(body)["items"] == []
    status, headers, body = get(running_node, "/cache?kind=" + "a" * 9000)
    assert status == 400 and error_of(headers, body)["code"] == "invalid_input"


def test_a_token_over_its_documented_length_is_refused_as_such(running_node: NodeProcess) -> None:
    """A URL can carry /auth's longest token (8192 characters); one character more is over the
    document's maxLength, and refused for it (it used to be checked as a token)."""
    status, headers, body = get(running_node, f"/auth?auth_token={'t' * 8193}")
    assert status == 400 and error_of(headers, body)["details"]["field"] == "auth_token"
    status, headers, body = get(running_node, f"/auth?auth_token={'t' * 8192}")
    assert status == 401 and error_of(headers, body)["code"] == "unauthorized"


def test_a_url_over_the_limit_is_400_in_the_error_shape(running_node: NodeProcess) -> None:
    secret = "t" * MAX_URL_BYTES
    status, headers, body = get(running_node, f"/auth?auth_token={secret}")
    assert status == 400
    error = error_of(headers, body)
    assert error["code"] == "bad_request" and str(MAX_URL_BYTES) in error["message"]
    assert secret[:100].encode() not in body  # the URL can carry a token: never echoed


def test_a_header_over_the_limit_is_400_in_the_error_shape(running_node: NodeProcess) -> None:
    status, headers, body = get(running_node, "/health", "X-Long: " + "h" * (MAX_HEADER_BYTES + 1))
    assert status == 400 and error_of(headers, body)["code"] == "bad_request"


def test_a_request_that_is_not_http_is_400_in_the_error_shape(running_node: NodeProcess) -> None:
    status, headers, body = raw_exchange(running_node, b"GET /health HTTP/1.1\r\nBad Header\r\n\r\n")
    assert status == 400 and error_of(headers, body)["code"] == "bad_request"
    status, _, _ = get(running_node, "/health")  # the node goes on serving
    assert status == 200
