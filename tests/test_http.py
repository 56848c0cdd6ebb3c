"""GET /, GET /health and the one error shape, with each dependency up and down."""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from typing import Any

import pytest
from aiohttp import web
from aiohttp.typedefs import Handler

from node import __version__
from node.config import Settings
from node.errors import Conflict, Forbidden, InvalidInput, NodeError, NotFound, TooLarge, Unauthorized
from node.identity import load_or_create
from node.services import EmbeddedServices
from node.store.errors import IpfsUnavailable
from node.sync.errors import RedisUnavailable
from tests.helpers import Client, NodeClient, closed_port, poll_async

ERROR_KEYS = {"code", "message", "details"}


async def test_index_describes_the_node(
    client: Client, settings: Settings, daemons: EmbeddedServices
) -> None:
    """GET / names the node, its version and id, and reports Redis and IPFS healthy."""
    response = await client.get("/")
    assert response.status == 200
    body = await response.json()
    assert body["name"] == "artdag-node"
    assert body["version"] == __version__
    assert body["node_id"] == load_or_create(settings.data_dir).node_id
    assert body["node_id"].startswith("z6Mk")
    assert body["public_url"] == settings.public_url
    assert body["redis"]["healthy"] is True and body["redis"]["version"]
    assert body["ipfs"]["healthy"] is True
    assert body["ipfs"]["peer_id"] and body["ipfs"]["version"]


async def test_node_key_is_private(client: Client, settings: Settings) -> None:
    """The node's signing key is written 0600 on first start and reused after."""
    await client.get("/")
    key_file = settings.data_dir / "node_key.pem"
    assert key_file.stat().st_mode & 0o777 == 0o600


async def test_health_ok_with_both_dependencies(client: Client) -> None:
    """GET /health is 200 with a check per dependency when both answer."""
    response = await client.get("/health")
    assert response.status == 200
    body = await response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"redis", "ipfs"}
    assert all(check["healthy"] for check in body["checks"].values())


async def test_ipfs_down_makes_health_503(settings: Settings, node_client: NodeClient) -> None:
    """An unreachable IPFS daemon: /health is 503 ipfs down, / still answers and says so."""
    client = await node_client(settings.replace(ipfs_api=f"http://127.0.0.1:{closed_port()}"))
    health = await client.get("/health")
    assert health.status == 503
    error = (await health.json())["error"]
    assert set(error) == ERROR_KEYS
    assert error["code"] == "unhealthy"
    assert error["message"].startswith("ipfs: IPFS daemon is unavailable")
    assert error["details"]["checks"]["redis"]["healthy"] is True
    assert error["details"]["checks"]["ipfs"]["healthy"] is False
    index = await (await client.get("/")).json()
    assert index["ipfs"]["healthy"] is False and index["redis"]["healthy"] is True


async def test_redis_down_makes_health_503(settings: Settings, node_client: NodeClient) -> None:
    """An unreachable Redis: /health is 503 naming redis; IPFS still reported healthy."""
    client = await node_client(settings.replace(redis_url=f"redis://127.0.0.1:{closed_port()}/0"))
    health = await client.get("/health")
    assert health.status == 503
    assert health.headers["Retry-After"] == "5"
    error = (await health.json())["error"]
    assert error["message"].startswith("redis: Redis is unavailable")
    assert error["details"]["checks"]["ipfs"]["healthy"] is True


async def test_embedded_daemon_death_is_reported_until_it_is_back(
    own_redis: EmbeddedServices, node_client: NodeClient
) -> None:
    """When the embedded redis-server dies under a running node, /health says so and where to
    look while it is down (here its port is taken, so restarts fail), and 200 again once the
    node has started it again, with no one touching the node."""
    client = await node_client(own_redis.settings, own_redis)
    assert (await client.get("/health")).status == 200
    redis_proc = own_redis.processes["redis"]
    assert redis_proc.pid is not None
    port = int(str(own_redis.settings.redis_url).rsplit(":", 1)[1].split("/")[0])
    os.kill(redis_proc.pid, signal.SIGKILL)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Taken the moment the dead server lets go (the node restarts it at its next 1 s tick).
        assert _bind_soon(squatter, port, timeout_s=10)
        squatter.listen()

        async def down() -> Any:
            health = await client.get("/health")
            details = (await health.json()).get("error", {}).get("details", {})
            return health.status == 503 and details["checks"]["redis"].get("daemon") and details

        details = await poll_async(down, timeout_s=30)
    redis_check = details["checks"]["redis"]
    assert redis_check["healthy"] is False
    # killed (-9), or a restart refused by the taken port (1): either way, where to look
    assert redis_check["daemon"] in {
        f"embedded redis-server exited with code {code}; see its log file {redis_proc.log_path}"
        for code in (-9, 1)
    }

    async def back() -> bool:
        return (await client.get("/health")).status == 200

    await poll_async(back, timeout_s=60)


def _bind_soon(sock: socket.socket, port: int, timeout_s: float) -> bool:
    """Bind ``port`` as soon as it is free, trying every millisecond (blocking on purpose: the
    supervisor must not get its turn first)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            time.sleep(0.001)
            continue
        return True
    return False


async def test_unknown_route_and_wrong_method_use_the_error_shape(client: Client) -> None:
    """aiohttp's own 404 and 405 come out in the one JSON error shape (405 keeps Allow)."""
    missing = await client.get("/no/such/route")
    assert missing.status == 404
    assert await missing.json() == {"error": {"code": "not_found", "message": "Not Found", "details": {}}}
    wrong = await client.delete("/health")
    assert wrong.status == 405
    assert (await wrong.json())["error"]["code"] == "method_not_allowed"
    assert "GET" in wrong.headers["Allow"]


SAMPLE_PARAMETERS = {
    "ref": "bafkreihkusuu5iya4djmo5mwrs7ef4fvwuoov7plople5hx535wu5caimu",
    "cid": "bafkreihkusuu5iya4djmo5mwrs7ef4fvwuoov7plople5hx535wu5caimu",
    "id": "bafkreihkusuu5iya4djmo5mwrs7ef4fvwuoov7plople5hx535wu5caimu",
    "run_id": "run-0123456789abcdef",
    "job_id": "0123456789abcdef",
}
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


async def test_a_405_allows_exactly_the_methods_of_its_route(client: Client) -> None:
    """For every path in the document and every method it lacks, 405 in the error shape whose
    Allow names exactly the path's methods (and HEAD with GET), not those of a pattern that
    the path also fits (/cache/upload is not /cache/{ref})."""
    document = await (await client.get("/openapi.json")).json()
    for path, item in document["paths"].items():
        documented = {method.upper() for method in item} | ({"HEAD"} if "get" in item else set())
        url = path.format(**SAMPLE_PARAMETERS)
        for method in sorted(set(METHODS) - documented):
            answer = await client.request(method, url)
            assert answer.status == 405, (method, url, answer.status)
            assert (await answer.json())["error"]["code"] == "method_not_allowed"
            assert set(answer.headers["Allow"].split(",")) == documented, (method, url)


def _raising(error: Exception) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        raise error

    return handler


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (InvalidInput("bad field", field="x"), 400, "invalid_input"),
        (Unauthorized("log in"), 401, "unauthorized"),
        (Forbidden("not yours"), 403, "forbidden"),
        (NotFound("no such run"), 404, "not_found"),
        (Conflict("in use"), 409, "conflict"),
        (TooLarge("too big"), 413, "too_large"),
        (RedisUnavailable("Redis is unavailable"), 503, "redis_unavailable"),
        (IpfsUnavailable("IPFS is unavailable"), 503, "ipfs_unavailable"),
        (NodeError("unclassified"), 500, "error"),
    ],
)
async def test_node_errors_map_to_status_and_shape(
    settings: Settings, node_client: NodeClient, error: NodeError, status: int, code: str
) -> None:
    """Each error kind becomes its status with {"error": {code, message, details}}."""
    client = await node_client(settings, routes=lambda app: app.router.add_get("/raise", _raising(error)))
    response = await client.get("/raise")
    assert response.status == status
    assert await response.json() == {
        "error": {"code": code, "message": error.message, "details": error.details}
    }


async def test_unexpected_exception_is_500_without_traceback(
    settings: Settings, node_client: NodeClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug is logged with its traceback; the client gets a 500 in the shape and no internals."""
    client = await node_client(
        settings,
        routes=lambda app: app.router.add_get("/bug", _raising(ZeroDivisionError("secret internals"))),
    )
    response = await client.get("/bug")
    assert response.status == 500
    body = await response.json()
    assert body["error"]["code"] == "internal_error"
    assert "secret internals" not in await response.text()
    assert any(record.exc_info and "GET /bug" in record.getMessage() for record in caplog.records)


async def test_each_request_writes_one_access_log_line(
    client: Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The access log has one line per request with method, path and status."""
    with caplog.at_level(logging.INFO, logger="aiohttp.access"):
        await client.get("/health")
        await client.get("/missing")
    lines = [record.getMessage() for record in caplog.records if record.name == "aiohttp.access"]
    assert len(lines) == 2
    assert '"GET /health HTTP/1.1" 200' in lines[0]
    assert '"GET /missing HTTP/1.1" 404' in lines[1]
