"""A run's event stream (``events:{id}``, XADD): what a client following the run reads.

Kinds: ``run_queued``, ``step_started``, ``step_progress``, ``step_cached``, ``step_finished``,
``step_failed``, ``progress``, then one of ``run_completed``, ``run_failed``, ``run_cancelled``
(``final_event``).
Each entry holds ``kind`` and ``data`` (the other fields, JSON). A step's outcome is reported
once per run, whichever node learns it first (``report``), with the progress it makes.
"""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis
from redis.typing import EncodableT, FieldT

from node.sync.connection import redis_errors
from node.sync.keys import Keys
from node.sync.run_status import RunStatus

EVENTS_MAX_LEN = 10_000
PERCENT_LOOKBACK = 64  # the latest events a listing reads of a running run for its progress
STEP_PROGRESS = "step_progress"  # frames done in a long step, with its percent and ETA
PLAN_EXPANDED = "plan_expanded"  # steps an expansion added to the plan (node.executor.expansion)
REPORTED_ONCE = ("step_finished", "step_cached")
STEP_STATES = {
    "step_started": "running",
    "step_cached": "cached",
    "step_finished": "done",
    "step_failed": "failed",
}

# Report a step's outcome (step_finished or step_cached) in the run's stream once per run,
# whichever node learns it first, then the progress it makes: the share of the plan's steps
# reported, unless the stream already says more (a plan that grew by an expansion has more steps
# than when the earlier percents were counted: the percent never goes back). A node that finds
# a result another node computed for this run adds nothing.
# KEYS: events, reported. ARGV: kind, data, cache id, steps in the plan, stream length.
_REPORT = """
local first = redis.call('SADD', KEYS[2], ARGV[3])
if first == 0 and ARGV[1] == 'step_cached' then return 0 end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[5], '*', 'kind', ARGV[1], 'data', ARGV[2])
if first == 1 then
  local percent = math.min(100, math.floor(100 * redis.call('SCARD', KEYS[2]) / tonumber(ARGV[4])))
  for _, entry in ipairs(redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 64)) do
    local fields = entry[2]
    if fields[2] == 'progress' then
      if cjson.decode(fields[4])['percent'] > percent then return 1 end
      break
    end
  end
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[5], '*', 'kind', 'progress',
             'data', '{"percent": ' .. string.format('%d', percent) .. '}')
end
return 1
"""


# The run's progress while a step is partly done: the share of its steps reported, plus the
# share of one step the step_progress event says; never 100 (that is the run's completion), and
# written only above the stream's latest percent, so the percents only grow (another step's
# smaller share, or one node behind another, adds nothing). A step's report always exceeds the
# partial percents before it: those counted less than one more step.
# KEYS: events, reported. ARGV: share of a step done (0-1), steps in the plan, stream length,
# the step's name as JSON.
_WITHIN = """
local done = redis.call('SCARD', KEYS[2]) + tonumber(ARGV[1])
local percent = math.min(99, math.floor(100 * done / tonumber(ARGV[2])))
for _, entry in ipairs(redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 64)) do
  local fields = entry[2]
  if fields[2] == 'progress' then
    if cjson.decode(fields[4])['percent'] >= percent then return 0 end
    break
  end
end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'kind', 'progress',
           'data', '{"percent": ' .. string.format('%d', percent) .. ', "step": ' .. ARGV[4] .. '}')
return percent
"""


def final_event(status: RunStatus) -> str:
    """The event that ends a run's stream with ``status`` (``run_completed``, ...)."""
    return f"run_{status}"


FINAL_EVENTS = frozenset(final_event(status) for status in RunStatus.finals())
# every kind there is
EVENT_KINDS = ("run_queued", *STEP_STATES, STEP_PROGRESS, PLAN_EXPANDED, "progress", *sorted(FINAL_EVENTS))


def entry(kind: str, fields: dict[str, Any]) -> dict[FieldT, EncodableT]:
    """The stream fields of one event."""
    return {"kind": kind, "data": json.dumps(fields)}


class RunEvents:
    """Appends to and reads runs' event streams."""

    def __init__(self, client: aioredis.Redis, keys: Keys, followers: aioredis.Redis | None = None) -> None:
        self._redis = client
        self._followers = followers or client  # blocking reads hold a connection for seconds
        self._keys = keys
        self._report_script = client.register_script(_REPORT)
        self._within_script = client.register_script(_WITHIN)

    async def append(self, run_id: str, kind: str, **fields: Any) -> None:
        """Add one event (the stream keeps about the last EVENTS_MAX_LEN)."""
        with redis_errors():
            await self._redis.xadd(
                self._keys.events(run_id), entry(kind, fields), maxlen=EVENTS_MAX_LEN, approximate=True
            )

    async def report(self, run_id: str, work: int, kind: str, fields: dict[str, Any]) -> None:
        """Report a step outcome (one of REPORTED_ONCE) once per run, with the progress it
        makes out of ``work`` steps; ``fields`` names the step's ``cache_id``."""
        keys = [self._keys.events(run_id), self._keys.run_reported(run_id)]
        with redis_errors():
            await self._report_script(
                keys=keys, args=[kind, json.dumps(fields), fields["cache_id"], work, EVENTS_MAX_LEN]
            )

    async def step_progress(self, run_id: str, work: int, fields: dict[str, Any]) -> None:
        """A long step's progress (``step_progress``: frames, percent, ETA), then the run's
        progress counting the part of that step done."""
        await self.append(run_id, STEP_PROGRESS, **fields)
        keys = [self._keys.events(run_id), self._keys.run_reported(run_id)]
        with redis_errors():
            share, step = int(fields["percent"]) / 100, json.dumps(fields["step"])
            await self._within_script(keys=keys, args=[share, work, EVENTS_MAX_LEN, step])

    async def unreported(self, run_id: str, cache_ids: list[str]) -> set[str]:
        """The ``cache_ids`` whose outcome this run's stream does not report yet."""
        with redis_errors():
            known = await self._redis.smismember(self._keys.run_reported(run_id), cache_ids)
        return {cache_id for cache_id, reported in zip(cache_ids, known, strict=True) if not reported}

    async def percents(self, run_ids: list[str]) -> dict[str, int]:
        """The highest progress each run's stream reports (0 for none), in one round trip."""
        with redis_errors():
            async with self._redis.pipeline(transaction=False) as pipe:
                for run_id in run_ids:
                    pipe.xrevrange(self._keys.events(run_id), count=PERCENT_LOOKBACK)
                answers = await pipe.execute()
        percents = {}
        for run_id, entries in zip(run_ids, answers, strict=True):
            reported = [
                int(json.loads(fields["data"])["percent"])
                for _, fields in entries
                if fields["kind"] == "progress"
            ]
            percents[run_id] = max(reported, default=0)
        return percents

    async def started(self, run_id: str) -> set[str]:
        """The cache ids of the steps some node started computing in this run."""
        events = await self.read(run_id)
        return {str(event.get("cache_id", "")) for _, event in events if event["kind"] == "step_started"}

    async def read(
        self, run_id: str, after: str = "-", block_ms: int | None = None
    ) -> list[tuple[str, dict[str, Any]]]:
        """Events after stream id ``after`` (exclusive; "-" for all), waiting up to ``block_ms``
        for the first one when there are none yet."""
        key = self._keys.events(run_id)
        with redis_errors():
            if block_ms is None:
                start = "-" if after == "-" else f"({after}"
                entries: Any = await self._redis.xrange(key, start, "+")
            else:
                answer: Any = await self._followers.xread(
                    {key: "0-0" if after == "-" else after}, block=block_ms
                )
                entries = answer[0][1] if answer else []
        return [
            (str(entry_id), {"kind": fields["kind"], **json.loads(fields["data"])})
            for entry_id, fields in entries
        ]
