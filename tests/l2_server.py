"""A small L2 for the tests: issues scoped tokens and answers ``POST /auth/verify`` and
``POST /published`` as the contracts in ``node/auth/l2.py`` and ``node/auth/publication.py``
(and docs/security.md) say, and checks provenance as L2 does (``attest``: the signer's
identity, then a re-execution on another node). Not a mock of a dependency of ours: L2 is
another project, which these machines do not run."""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
from aiohttp import web
from aiohttp.test_utils import TestServer

from node.records import verify_record
from tests.helpers import Client, poll_async


class TestL2:
    """The L2 at ``url``; ``down`` makes it answer 503; ``actor_host`` lies about where its
    users live."""

    __test__ = False  # not a test class

    def __init__(self) -> None:
        self._secret = secrets.token_bytes(32)
        self.revoked: set[str] = set()
        self.down = False
        self.actor_host = ""
        self.server: TestServer | None = None
        self.verified = 0  # how many times it was asked
        self.published: set[str] = set()  # SHA3-256 ids of content published here

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/auth/verify", self._verify)
        app.router.add_post("/published", self._published)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()

    def issue(self, username: str, scope: str, *, lifetime_s: float = 3600) -> str:
        """A token for ``username`` on the L1 at ``scope``."""
        now = int(time.time())
        claims = {"iss": self.url, "sub": username, "scope": scope, "iat": now, "exp": now + int(lifetime_s),
                  "jti": secrets.token_hex(8)}  # fmt: skip
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def logout(self, token: str) -> None:
        self.revoked.add(token)

    async def _verify(self, request: web.Request) -> web.Response:
        self.verified += 1
        if self.down:
            return web.json_response({"error": "maintenance"}, status=503)
        body = await request.json()
        token, scope = str(body.get("token", "")), str(body.get("scope", ""))
        try:
            claims = jwt.decode(token, self._secret, algorithms=["HS256"])
        except jwt.ExpiredSignatureError:
            return web.json_response({"valid": False, "reason": "expired"})
        except jwt.PyJWTError:
            return web.json_response({"valid": False, "reason": "unknown"})
        who = self._who(claims)
        if token in self.revoked:
            return web.json_response({"valid": False, "reason": "revoked", **who})
        if claims["scope"] != scope:
            return web.json_response({"valid": False, "reason": "wrong_scope", **who})
        return web.json_response({"valid": True, "expires_at": claims["exp"], **who})

    async def _published(self, request: web.Request) -> web.Response:
        if self.down:
            return web.json_response({"error": "maintenance"}, status=503)
        asked = set((await request.json()).get("sha3_256", []))
        return web.json_response({"published": sorted(asked & self.published)})

    async def attest(self, origin: Client, cid: str, reexecutor: Client, token: str) -> dict[str, Any]:
        """What L2 does before it accepts a provenance record from a node: the record's bytes are
        signed by the node its ``GET /identity`` names and verify there; then another node
        re-executes it; the re-execution record, its signature checked against that node's
        ``GET /identity``."""
        signer = (await (await origin.get("/identity")).json())["node_id"]
        verify_record(await (await origin.get(f"/cache/{cid}")).read(), {signer})
        verdict = await (await origin.get(f"/provenance/{cid}/verify", params={"trust": signer})).json()
        assert verdict["ok"], verdict["problems"]
        job = await reexecuted(reexecutor, cid, token)
        assert job["state"] == "done", job
        witness = (await (await reexecutor.get("/identity")).json())["node_id"]
        return verify_record(await (await reexecutor.get(f"/cache/{job['record_cid']}")).read(), {witness})

    def _who(self, claims: dict[str, Any]) -> dict[str, str]:
        host = self.actor_host or f"127.0.0.1:{self.server.port if self.server else 0}"
        return {
            "username": claims["sub"],
            "actor": f"http://{host}/users/{claims['sub']}",
            "scope": claims["scope"],
        }


async def reexecuted(node: Client, cid: str, token: str) -> dict[str, Any]:
    """Ask ``node`` to re-execute the provenance record ``cid``; its job once it has ended."""
    asked = await node.post(f"/provenance/{cid}/reexecute", headers={"Authorization": f"Bearer {token}"})
    assert asked.status == 202, await asked.text()

    async def finished() -> dict[str, Any] | None:
        job: dict[str, Any] = await (await node.get(asked.headers["Location"])).json()
        return job if job["state"] != "running" else None

    return dict(await poll_async(finished, timeout_s=120))


@contextlib.asynccontextmanager
async def running_l2() -> AsyncIterator[TestL2]:
    """A test L2 listening on a free loopback port until the block ends."""
    server = TestL2()
    await server.start()
    try:
        yield server
    finally:
        await server.close()
