"""Local-mode browser sessions (#21 item 6): logging a browser in with the admin token gives it a
session of its own, never the token; ``/logout`` or ``/auth/revoke`` ends it; it expires, and
another node sharing the Redis does not accept it."""

from __future__ import annotations

from pathlib import Path

from node.auth.sessions import SESSION_FOR_S, SESSION_PREFIX
from node.config import Settings
from node.http.appkeys import NODE
from node.http.auth import SESSION_COOKIE
from tests.helpers import Client, NodeClient


async def log_in(client: Client, auth: dict[str, str]) -> str:
    """Log the test client's browser in with the admin token; the cookie it got."""
    token = auth["Authorization"].split()[1]
    response = await client.get("/auth", params={"auth_token": token}, allow_redirects=False)
    assert response.status == 302
    cookie = response.cookies[SESSION_COOKIE]
    assert cookie.value != token and token not in cookie.value  # never the admin token
    assert cookie.value.startswith(SESSION_PREFIX)
    assert int(cookie["max-age"]) == SESSION_FOR_S and cookie["httponly"]
    return cookie.value


async def whoami(client: Client, headers: dict[str, str] | None = None) -> str | None:
    body = await (await client.get("/", headers=headers or {})).json()
    return body["user"]  # type: ignore[no-any-return]


async def test_logging_in_with_the_admin_token_starts_a_session_that_logout_ends(
    client: Client, auth: dict[str, str], settings: Settings
) -> None:
    """The cookie is a session: the browser is admin; after /logout the same cookie value,
    sent again (a copy kept by an attacker), is refused; the admin token still works."""
    session = await log_in(client, auth)
    assert await whoami(client) == "admin"
    response = await client.get("/logout", allow_redirects=False)
    assert response.status == 302
    client.session.cookie_jar.clear()
    replayed = {"Authorization": f"Bearer {session}"}
    assert await whoami(client, replayed) is None
    refused = await client.delete("/runs/run-0123456789abcdef", headers=replayed)
    assert refused.status == 401
    assert "log in again" in (await refused.json())["error"]["message"]
    assert await whoami(client, auth) == "admin"


async def test_a_session_can_be_revoked_and_expires(
    client: Client, auth: dict[str, str], settings: Settings
) -> None:
    """POST /auth/revoke with a session token ends it (400 the second time); the session's
    Redis key carries its expiry."""
    session = await log_in(client, auth)
    client.session.cookie_jar.clear()
    node = client.app[NODE]
    keys = [key async for key in node.redis.scan_iter(match=f"{settings.redis_prefix}session:*")]
    assert len(keys) == 1
    assert 0 < await node.redis.ttl(keys[0]) <= SESSION_FOR_S
    assert (await client.post("/auth/revoke", json={"token": session})).status == 200
    assert await whoami(client, {"Authorization": f"Bearer {session}"}) is None
    again = await client.post("/auth/revoke", json={"token": session})
    assert again.status == 400 and (await again.json())["error"]["details"]["field"] == "token"


async def test_another_node_sharing_the_redis_refuses_the_session(
    client: Client, auth: dict[str, str], settings: Settings, node_client: NodeClient, tmp_path: Path
) -> None:
    """A session belongs to the node whose admin started it: a second node (its own admin
    token, the same Redis and key prefix) does not take it."""
    session = await log_in(client, auth)
    other = await node_client(settings.replace(data_dir=tmp_path / "other"))
    assert await whoami(other, {"Authorization": f"Bearer {session}"}) is None
