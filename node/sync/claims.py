"""Claims on steps: who computes what, with no broker (docs/design.md "Claims").

Every decision is one Lua script, so it is atomic on the one Redis all nodes share:

- ``claim_or_hit``: the step's result exists -> ``hit``; someone holds a live claim -> ``held``;
  the step failed on its own ``max_attempts`` times in this try -> ``failed`` (with the last
  error); else the claim is taken (``SET NX PX lease`` with this node's token) -> ``won``.
- ``heartbeat``: extend the lease, only while the claim still holds this token.
- ``commit``: only while the claim holds this token, write the result if absent (never
  overwritten), drop the claim and publish a notice; otherwise this node was *fenced* (its
  lease lapsed and another took the step) and nothing is written.
- ``release``: give up after a failure, recording the error and counting it, so another attempt
  may follow; with no error (a cancellation, or an outage or a killed worker: not the step's
  fault) nothing is counted.

Attempts belong to a try (the run, ``scope``): a later run of the same step starts afresh, and
the count expires (ATTEMPTS_TTL_S), so a step is never failed by another run's history.

A token is ``node_id:random``; an expired claim is simply gone, so a dead node's step is claimed
again by anyone once its lease lapses.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Literal

import redis.asyncio as aioredis

from node.sync.connection import redis_errors
from node.sync.index import StepEntry, step_write
from node.sync.keys import Keys

Outcome = Literal["won", "hit", "held", "failed"]
ATTEMPTS_TTL_S = 7 * 24 * 3600  # a try's failure count outlives any run that could read it
DEATHS_PER_ATTEMPT = 3  # claims ended by their node's death, per attempt, before the step fails
# Drop a claim only if it still holds the token: a node taking back its earlier life's claims
# (their ends are deaths: nothing counted).
_DROP = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# A claim that is neither released nor committed ended with its node's death (or its lease
# lapsing). Those are not the step's fault either, but a step that takes its node down every
# time must not loop for ever: after ARGV[5] such deaths in this try it fails too. A claim won
# over a lapsed one that no claim took over yet is a takeover ('taken': lapses taken over).
_CLAIM_OR_HIT = """
if ARGV[4] ~= '1' and redis.call('EXISTS', KEYS[1]) == 1 then return {'hit', ''} end
local holder = redis.call('GET', KEYS[2])
if holder then return {'held', holder} end
local failed = tonumber(redis.call('HGET', KEYS[3], 'count') or '0')
if failed >= tonumber(ARGV[3]) then
  return {'failed', redis.call('HGET', KEYS[3], 'error') or 'no reason recorded'}
end
local started = tonumber(redis.call('HGET', KEYS[3], 'started') or '0')
local ended = tonumber(redis.call('HGET', KEYS[3], 'ended') or '0')
if started - ended >= tonumber(ARGV[5]) then
  return {'failed', 'the node computing this step died ' .. (started - ended) ..
          ' times (out of memory?); the step is not tried again in this run'}
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('HINCRBY', KEYS[3], 'started', 1)
local lapsed = started - ended
local taken = tonumber(redis.call('HGET', KEYS[3], 'taken') or '0')
if lapsed > taken then redis.call('HSET', KEYS[3], 'taken', lapsed) end
redis.call('EXPIRE', KEYS[3], ARGV[6])
return {'won', tostring(failed + 1), lapsed > taken and '1' or '0'}
"""
_HEARTBEAT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
# KEYS: claim, step, steps listing, receipt (optional); ARGV: token, channel, notice, receipt
# bytes, cache id, fields...
_COMMIT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('HSET', KEYS[2], unpack(ARGV, 6))
  local now = redis.call('TIME')
  redis.call('ZADD', KEYS[3], 'NX', now[1] + now[2] / 1000000, ARGV[5])
  if KEYS[4] then redis.call('SET', KEYS[4], ARGV[4]) end
end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('HINCRBY', KEYS[2], 'ended', 1)
end
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[2], 'error', ARGV[2])
  redis.call('HINCRBY', KEYS[2], 'count', 1)
  redis.call('EXPIRE', KEYS[2], ARGV[5])
end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
"""


@dataclass(frozen=True)
class Claim:
    """The answer of ``claim_or_hit``: the outcome, this node's token if it won, and detail
    (who holds it, the attempt number, or the error that exhausted the attempts)."""

    outcome: Outcome
    token: str = ""
    detail: str = ""
    took_over: bool = False  # won after the last holder's lease lapsed (it died, or stalled)


def step_notice(cache_id: str) -> str:
    """What is published when a step's claim ends (committed or released)."""
    return f"step:{cache_id}"


class ClaimBoard:
    """The claim scripts for one node: its id, lease and attempt limit."""

    def __init__(
        self, client: aioredis.Redis, keys: Keys, node_id: str, *, lease_s: float, max_attempts: int
    ) -> None:
        self._client = client
        self._keys = keys
        self.node_id = node_id
        self.lease_ms = max(1, round(lease_s * 1000))
        self.max_attempts = max_attempts
        self._claim = client.register_script(_CLAIM_OR_HIT)
        self._heartbeat = client.register_script(_HEARTBEAT)
        self._commit = client.register_script(_COMMIT)
        self._release = client.register_script(_RELEASE)
        self._drop = client.register_script(_DROP)

    async def claim_or_hit(self, cache_id: str, *, recompute: bool = False, scope: str = "") -> Claim:
        """Take the step, or learn it is done, held elsewhere, or out of attempts in this try
        (``scope``). ``recompute``: its result is recorded but its output was deleted since;
        compute it again (the commit still never overwrites: the bytes are the same)."""
        token = f"{self.node_id}:{secrets.token_hex(8)}"
        keys = [self._keys.step(cache_id), self._keys.claim(cache_id), self._keys.attempts(cache_id, scope)]
        with redis_errors():
            outcome, detail, *taken = await self._claim(
                keys=keys,
                args=[
                    token,
                    self.lease_ms,
                    self.max_attempts,
                    "1" if recompute else "0",
                    DEATHS_PER_ATTEMPT * self.max_attempts,
                    ATTEMPTS_TTL_S,
                ],
            )
        outcome, detail = _text(outcome), _text(detail)
        took_over = bool(taken) and _text(taken[0]) == "1"
        return Claim(outcome, token if outcome == "won" else "", detail, took_over)  # type: ignore[arg-type]

    async def heartbeat(self, cache_id: str, token: str) -> bool:
        """Extend the lease; False if the claim is no longer this token's (lost)."""
        with redis_errors():
            return bool(await self._heartbeat(keys=[self._keys.claim(cache_id)], args=[token, self.lease_ms]))

    async def commit(self, entry: StepEntry, token: str, receipt: bytes = b"") -> bool:
        """Record the step's result (and its signed receipt's bytes) if the claim is still
        ours; False: fenced, nothing written."""
        keys, args = step_write(self._keys, entry, receipt)
        with redis_errors():
            done = await self._commit(
                keys=[self._keys.claim(entry.cache_id), *keys],
                args=[token, self._keys.notices, step_notice(entry.cache_id), *args],
            )
        return bool(done)

    async def release(self, cache_id: str, token: str, error: str = "", *, scope: str = "") -> None:
        """Give the step up after its own failure, recording and counting it in this try
        (``scope``; the next claim may try again); with no error (a cancellation, an outage, a
        killed worker), just let go."""
        keys = [self._keys.claim(cache_id), self._keys.attempts(cache_id, scope)]
        args: list[str | int] = [token, error, self._keys.notices, step_notice(cache_id), ATTEMPTS_TTL_S]
        with redis_errors():
            await self._release(keys=keys, args=args)

    async def release_own(self) -> int:
        """Drop every claim this node id holds: a node that starts again takes back at once
        what its earlier life held, instead of waiting out the leases (start-up work: a SCAN
        of the claim keys); how many were dropped. Waiters hear of each at their next poll."""
        dropped = 0
        pattern = self._keys.claim("0" * 64)[:-64] + "*"
        with redis_errors():
            async for key in self._client.scan_iter(match=pattern, count=1000):
                holder = _text(await self._client.get(key) or "")
                if holder.startswith(f"{self.node_id}:"):
                    dropped += int(await self._drop(keys=[_text(key)], args=[holder]))
        return dropped


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
