"""The deletion rules, one place for the API and the web UI (the seeds' deletion rules):

- content: only an owner (or an admin) may delete it; content a run uses (input, recipe or
  output) is refused (409 ``content_in_use``, naming the runs: delete those first); content
  published on an L2 is refused (409 ``content_published``); otherwise the caller's ownership
  goes (an admin's: all of it), and the bytes are unpinned and forgotten once no owner is left;
- runs: a running one is refused (cancel it first); a failed or cancelled one can always be
  deleted; a completed one only if its output is not published on an L2 (409
  ``run_output_published``); deleting a run releases what it held (inputs, recipe, output), and
  whatever that leaves with no owner, no run, no publication and no use by a run still going is
  unpinned and forgotten, except recipe bytes (provenance names them); if L2 cannot be asked
  then, the run goes and its content stays.

Checks against runs starting at the same moment hold under the per-content lock that a run's
submission also takes (``RunManager._hold``, ``ContentStore.delete`` and ``discard``). Asking
L2 comes first and fails closed: an L2 that cannot be asked means nothing is deleted (503).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from node.auth.errors import L2Unavailable
from node.auth.local import User
from node.auth.publication import PublicationChecker
from node.errors import Conflict, Forbidden
from node.store.content import ContentStore, Deleted
from node.sync.activities import Activities
from node.sync.index import ContentEntry
from node.sync.run_index import RunIndex
from node.sync.run_status import RunRecord, RunStatus

log = logging.getLogger(__name__)
PUBLISHED_CONTENT = "content published on an L2 cannot be deleted: unpublish it there first"


class ContentPublished(Conflict):
    code = "content_published"


class RunOutputPublished(Conflict):
    code = "run_output_published"


@dataclass(frozen=True)
class RunDeleted:
    run_id: str
    removed: list[ContentEntry]  # content the run held that nothing else keeps: unpinned


class DeletionRules:
    """Deletes content and runs when the rules allow, records what went."""

    def __init__(
        self,
        *,
        store: ContentStore,
        checker: PublicationChecker,
        activities: Activities,
        runs: RunIndex,
    ) -> None:
        self._store = store
        self._checker = checker
        self._activities = activities
        self._runs = runs

    async def delete_content(self, entry: ContentEntry, user: User) -> Deleted:
        # Who and what uses it first (403, 409): L2 is asked only about a delete that may happen.
        await self._store.check_deletable(entry.content_id, user.name, admin=user.is_admin)
        if await self._checker.published([entry.content_id]):
            raise ContentPublished(PUBLISHED_CONTENT, rule="published")
        deleted = await self._store.delete(entry.content_id, user.name, admin=user.is_admin)
        if deleted.unpinned:
            await self._activities.record(
                "content_deleted", user.name, [entry.cid], content_id=entry.content_id
            )
        return deleted

    async def content_refusals(self, entries: list[ContentEntry], user: User) -> dict[str, str]:
        """Why ``user`` may not delete each of ``entries`` now (content id -> the message the API
        would answer); content left out may be deleted. For pages, which show the reason before
        anyone clicks; the API checks again on the delete itself."""
        refusals: dict[str, str] = {}
        for entry in entries:
            try:
                await self._store.check_deletable(entry.content_id, user.name, admin=user.is_admin)
            except (Forbidden, Conflict) as exc:
                refusals[entry.content_id] = exc.message
        rest = [entry.content_id for entry in entries if entry.content_id not in refusals]
        try:
            published = await self._checker.published(rest) if rest else set()
        except L2Unavailable:  # the delete itself asks again, and says L2 is down if it still is
            published = set()
        for content_id in published:
            refusals[content_id] = PUBLISHED_CONTENT
        return refusals

    async def delete_run(self, record: RunRecord, user: User) -> RunDeleted:
        run_id, output = record["run_id"], record["output"]
        if (
            record["status"] == RunStatus.COMPLETED
            and output
            and await self._checker.published([output["content_id"]])
        ):
            raise RunOutputPublished(
                "the run's output is published on an L2: a completed run whose output is published cannot be "
                "deleted",
                rule="published",
                run_id=run_id,
            )
        released = await self._runs.delete(run_id, record["status"])  # 409 running, or changed since
        # A recipe's bytes stay (provenance names them; a run may be starting with them), and so
        # does anything a run still going may be reusing.
        candidates = set(released) - {record["recipe_content_id"]} - await self._runs.active_content()
        try:
            kept = await self._checker.published(sorted(candidates))
        except L2Unavailable as exc:  # the run goes; what it held stays until L2 can say
            log.warning("run %s deleted; its content is kept: %s", run_id, exc.message)
            kept = candidates
        removed = []
        for content_id in sorted(candidates - kept):
            entry = await self._store.index.get(content_id)
            if entry is not None and await self._store.discard(entry):  # no owner and no run left
                removed.append(entry)
        await self._activities.record(
            "run_deleted", user.name, [entry.cid for entry in removed], run_id=run_id, status=record["status"]
        )
        return RunDeleted(run_id, removed)
