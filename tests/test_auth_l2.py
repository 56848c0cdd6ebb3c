"""Logging in through an L2: tokens checked with their issuer, the session cookie, revocation
(one token, or all of a user's on L2 logout), CSRF, and L2 being down. The L2 is a small test
server implementing the contract (``tests/l2_server.py``); Redis and IPFS are real."""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from node.http.access_log import AccessLogger
from node.http.appkeys import NODE
from node.http.auth import SESSION_COOKIE
from tests.conftest import L2_PUBLIC_URL
from tests.helpers import Client
from tests.l2_server import TestL2, running_l2

PUBLIC_URL = L2_PUBLIC_URL


@pytest.fixture
async def other_l2() -> AsyncIterator[TestL2]:
    async with running_l2() as server:
        yield server


@pytest.fixture
def node(l2_node: Client) -> Client:
    return l2_node


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def upload(client: Client, headers: dict[str, str], data: bytes = b"hello") -> aiohttp.ClientResponse:
    form = aiohttp.FormData()
    form.add_field("file", io.BytesIO(data), filename="f")
    return await client.post("/cache/upload", data=form, headers=headers)


async def login(client: Client, token: str) -> aiohttp.ClientResponse:
    return await client.get("/auth", params={"auth_token": token}, allow_redirects=False)


async def test_a_valid_token_logs_in_with_a_cookie_and_leaves_the_url(node: Client, l2: TestL2) -> None:
    """GET /auth with a token L2 issued for this node: 302 to /, an HttpOnly, SameSite=Lax
    session cookie holding it (not Secure on http); the cookie and a bearer token of the same
    user act alike, for @alice@L2-HOST."""
    token = l2.issue("alice", PUBLIC_URL)
    response = await login(node, token)
    assert response.status == 302 and response.headers["Location"] == "/"
    cookie = response.cookies[SESSION_COOKIE]
    assert cookie.value == token
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and not cookie["secure"]
    alice = f"@alice@{l2.url.removeprefix('http://')}"
    assert (await (await node.get("/")).json())["user"] == alice
    by_cookie = await upload(node, {"Origin": PUBLIC_URL}, b"by cookie")
    assert by_cookie.status == 201, await by_cookie.text()
    node.session.cookie_jar.clear()
    by_bearer = await upload(node, bearer(l2.issue("alice", PUBLIC_URL)), b"by bearer")
    assert by_bearer.status == 201
    index = node.app[NODE].store.index
    assert (await (await node.get("/")).json())["user"] is None  # not logged in
    for stored in (by_cookie, by_bearer):
        assert await index.owners((await stored.json())["content_id"]) == {alice}


@pytest.mark.parametrize("case", ["another node", "untrusted issuer", "actor elsewhere", "garbage"])
async def test_tokens_that_are_not_for_this_node_are_refused(
    node: Client, l2: TestL2, other_l2: TestL2, case: str
) -> None:
    """A token scoped to another L1, one from an L2 this node does not trust, one whose user
    lives on another domain than its issuer, and a non-token: 401 at login and as bearer."""
    if case == "actor elsewhere":
        l2.actor_host = "evil.example"
    token = {
        "another node": l2.issue("alice", "http://other-l1.test"),
        "untrusted issuer": other_l2.issue("alice", PUBLIC_URL),
        "actor elsewhere": l2.issue("alice", PUBLIC_URL),
        "garbage": "not-a-token",
    }[case]
    response = await login(node, token)
    assert response.status == 401
    assert SESSION_COOKIE not in response.cookies
    assert (await upload(node, bearer(token))).status == 401
    reason = {"another node": "wrong_scope", "untrusted issuer": "not an L2 this node trusts",
              "actor elsewhere": "actor_domain", "garbage": "not an L2 this node trusts"}[case]  # fmt: skip
    assert reason in (await response.json())["error"]["message"]


async def test_a_revoked_token_fails_on_the_very_next_request(node: Client, l2: TestL2) -> None:
    """A token L2 said was valid (and the node remembers for 60 s) is revoked: the next
    request with it is 401, bearer or cookie."""
    token = l2.issue("alice", PUBLIC_URL)
    assert (await upload(node, bearer(token))).status == 201
    assert (await node.post("/auth/revoke", json={"token": token})).status == 200
    assert (await upload(node, bearer(token), b"again")).status == 401
    assert (await login(node, token)).status == 401


async def test_revoke_user_needs_proof_and_then_revokes_every_token(node: Client, l2: TestL2) -> None:
    """A stranger (bob's token) cannot revoke alice; L2, after alice logs out there, calls
    revoke-user with her (now revoked) token: every token of hers this node has seen stops
    working at once, even one whose "valid" answer the node had cached."""
    first, second = l2.issue("alice", PUBLIC_URL), l2.issue("alice", PUBLIC_URL)
    for token in (first, second):
        assert (await upload(node, bearer(token), token.encode()[-8:])).status == 201
    alice = f"@alice@{l2.url.removeprefix('http://')}"
    stranger = await node.post(
        "/auth/revoke-user", json={"user": alice, "token": l2.issue("bob", PUBLIC_URL)}
    )
    assert stranger.status == 403
    elsewhere = l2.issue("alice", "http://other-l1.test")  # alice's, but for another L1: no proof here
    assert (await node.post("/auth/revoke-user", json={"user": alice, "token": elsewhere})).status == 403
    assert (await upload(node, bearer(second), b"still")).status == 201
    l2.logout(first)
    answer = await node.post("/auth/revoke-user", json={"user": alice, "token": first})
    assert answer.status == 200 and (await answer.json())["revoked"] == 2
    asked = l2.verified
    assert (await upload(node, bearer(second), b"after")).status == 401
    assert l2.verified == asked  # refused from Redis, without asking L2


async def test_l2_down_means_503_and_no_access(node: Client, l2: TestL2) -> None:
    """With the token's L2 answering 503, a login and a write are 503, never let through."""
    token = l2.issue("alice", PUBLIC_URL)
    l2.down = True
    login_answer = await login(node, token)
    assert login_answer.status == 503 and (await login_answer.json())["error"]["code"] == "l2_unavailable"
    assert (await upload(node, bearer(token))).status == 503
    await l2.close()  # gone altogether: the same
    assert (await upload(node, bearer(token))).status == 503


async def test_cookie_changes_need_this_node_s_origin(node: Client, l2: TestL2) -> None:
    """With the session cookie, a write from another origin, or with no Origin or Referer, is
    403 csrf_refused; from this node's origin (or Referer) it works; a bearer token needs none."""
    assert (await login(node, l2.issue("alice", PUBLIC_URL))).status == 302
    for headers in ({}, {"Origin": "https://evil.example"}, {"Referer": "https://evil.example/page"}):
        refused = await upload(node, headers)
        assert refused.status == 403, headers
        assert (await refused.json())["error"]["code"] == "csrf_refused"
    stored = await upload(node, {"Origin": PUBLIC_URL}, b"a")
    assert stored.status == 201
    cid = (await stored.json())["cid"]
    no_origin = await node.delete(f"/cache/{cid}")
    assert no_origin.status == 403 and (await no_origin.json())["error"]["code"] == "csrf_refused"
    assert (await upload(node, {"Referer": f"{PUBLIC_URL}/media"}, b"b")).status == 201
    node.session.cookie_jar.clear()
    assert (await upload(node, bearer(l2.issue("bob", PUBLIC_URL)), b"c")).status == 201


async def test_logout_clears_the_cookie_and_revokes_its_token(node: Client, l2: TestL2) -> None:
    """GET /logout from another site's link: 302 home and the cookie cleared, but the token is
    not revoked (a link must not end a user's sessions everywhere). From this node's page: the
    token no longer works, even as bearer."""
    token = l2.issue("alice", PUBLIC_URL)
    assert (await login(node, token)).status == 302
    response = await node.get("/logout", allow_redirects=False, headers={"Referer": "https://evil.example/"})
    assert response.status == 302 and response.headers["Location"] == "/"
    assert response.cookies[SESSION_COOKIE].value == ""
    assert (await upload(node, bearer(token))).status == 201
    assert (await login(node, token)).status == 302
    assert (await node.get("/logout", allow_redirects=False, headers={"Origin": PUBLIC_URL})).status == 302
    assert (await upload(node, bearer(token), b"later")).status == 401


async def test_only_tokens_an_l2_issued_are_kept_as_revoked(
    node: Client, l2: TestL2, redis_client: Any
) -> None:
    """POST /auth/revoke with a token naming a trusted L2 that the L2 never issued (a forged
    signature): 400, and nothing is written (no one can fill Redis with revocations)."""
    real = l2.issue("alice", PUBLIC_URL)
    header, payload, _ = real.split(".")
    forged = f"{header}.{payload}.{'A' * 43}"
    before = len([key async for key in redis_client.scan_iter(match="*revoked:*")])
    answer = await node.post("/auth/revoke", json={"token": forged})
    assert answer.status == 400
    assert len([key async for key in redis_client.scan_iter(match="*revoked:*")]) == before


async def test_access_log_blanks_the_login_token(caplog: pytest.LogCaptureFixture) -> None:
    """The access log line of GET /auth?auth_token=... shows the path, never the token."""
    logger = logging.getLogger("test.access")
    request = make_mocked_request("GET", "/auth?auth_token=SECRET-TOKEN&next=x", headers={"User-Agent": "ua"})
    with caplog.at_level(logging.INFO, logger="test.access"):
        AccessLogger(logger, "").log(request, web.Response(status=302), 0.01)
    assert "SECRET-TOKEN" not in caplog.text
    assert "/auth?auth_token=-&next=x" in caplog.text


async def test_local_mode_keeps_its_admin_token_and_refuses_l2_tokens(
    client: Client, auth: dict[str, str], l2: TestL2
) -> None:
    """With no L2 trusted, the admin token logs in (a browser session for the operator) and
    an L2's token is refused, saying the node is in local mode."""
    token = auth["Authorization"].removeprefix("Bearer ")
    assert (await login(client, token)).status == 302
    refused = await login(client, l2.issue("alice", PUBLIC_URL))
    assert refused.status == 401 and "local mode" in (await refused.json())["error"]["message"]
