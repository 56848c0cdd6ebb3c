"""Whether a user may start more runs: their unfinished runs against ``ARTDAG_MAX_RUNS_PER_USER``,
and what they store against ``ARTDAG_QUOTA_BYTES`` (a run's output counts to its owner).

Both are asked before a submission writes anything; the run count is asked again, atomically,
where the run is added (``RunIndex.add``), so runs submitted at once to several nodes cannot
pass it together. A run once accepted is never failed by either: its output may take its
owner past the quota, which then refuses their next upload or run.
"""

from __future__ import annotations

from dataclasses import dataclass

from node.errors import TooManyRequests
from node.store.errors import QuotaExceeded
from node.sync.usage import Usage

RUNS_BUSY_RETRY_S = 10  # a run takes seconds to minutes: ask again after a while


class TooManyRuns(TooManyRequests):
    code = "too_many_runs"

    @classmethod
    def at(cls, unfinished: int, limit: int) -> TooManyRuns:
        return cls(
            f"you have {unfinished} unfinished runs, and {limit} at once is your limit "
            "(ARTDAG_MAX_RUNS_PER_USER): wait for one to finish, or cancel one (POST /runs/{run_id}/cancel)",
            headers={"Retry-After": str(RUNS_BUSY_RETRY_S)},
            unfinished=unfinished,
            limit=limit,
        )


@dataclass(frozen=True)
class OwnerLimits:
    """The limits of the user who submits (all 0 for the admin, or when none are set)."""

    max_runs: int = 0  # unfinished runs at once, cluster-wide; 0: no limit
    quota: int = 0  # bytes held; 0: no quota


NO_LIMITS = OwnerLimits()


async def check_owner(usage: Usage, owner: str, limits: OwnerLimits, adding: int = 1) -> None:
    """TooManyRuns (429) if ``adding`` runs would take ``owner`` past their run limit;
    QuotaExceeded (413) if they already store as much as their quota allows."""
    if limits.max_runs:
        unfinished = await usage.unfinished_runs(owner)
        if unfinished + adding > limits.max_runs:
            raise TooManyRuns.at(unfinished, limits.max_runs)
    if limits.quota:
        used = await usage.stored_bytes(owner)
        if used >= limits.quota:
            raise QuotaExceeded.over(used, limits.quota)
