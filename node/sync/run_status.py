"""The types of a run: its status, and its record as stored (``run:{id}``, JSON) and served."""

from __future__ import annotations

from enum import StrEnum
from typing import NotRequired, TypedDict, cast


class RunStatus(StrEnum):
    """Where a run is. A run moves queued -> running -> one final status, never back; a final
    status, once written, stands (a completion and a cancel may race: the first wins)."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in _FINALS

    @classmethod
    def finals(cls) -> tuple[RunStatus, ...]:
        """The final statuses, in declaration order."""
        return tuple(status for status in cls if status.final)


_FINALS = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})


def is_final(status: str) -> bool:
    """Whether ``status`` (as read from a record) is a final one."""
    return status in _FINALS


class RecipeRef(TypedDict):
    name: str
    cid: str


class RunInput(TypedDict):
    name: str  # the SOURCE's variable or asset name
    content_id: str


class RunOutput(TypedDict):
    cid: str
    content_id: str
    media_type: str


class RunEnding(TypedDict, total=False):
    """What a final status adds to a run's record (and its final event)."""

    output: RunOutput | None
    provenance_cid: str | None
    attestation_cid: str | None
    error: str | None


REQUIRED_FIELDS = (
    "run_id", "status", "recipe", "recipe_content_id", "plan_id", "plan_cid", "inputs", "owner",
    "output_name", "created", "updated", "output", "provenance_cid", "error",
)  # fmt: skip


def read_record(value: object) -> RunRecord:
    """A run record read back (from Redis or a published index), checked for every field and
    a known status; KeyError or ValueError if it is not one."""
    if not isinstance(value, dict):
        raise ValueError("a run record is a JSON object")
    missing = [name for name in REQUIRED_FIELDS if name not in value]
    if missing:
        raise KeyError(f"a run record lacks {', '.join(missing)}")
    return cast(RunRecord, {**value, "status": RunStatus(value["status"])})


class RunRecord(TypedDict):
    """A run as stored and served (``GET /runs/{id}`` adds its steps and progress)."""

    run_id: str
    status: RunStatus
    recipe: RecipeRef
    recipe_content_id: str
    plan_id: str
    plan_cid: str
    inputs: list[RunInput]
    owner: str
    output_name: str
    created: str
    updated: str
    output: RunOutput | None
    provenance_cid: str | None
    error: str | None
    started: NotRequired[str]  # when a node began rendering it (absent in records from before)
    finished: NotRequired[str]  # when it reached its final status
    retry_of: NotRequired[str]  # the failed or cancelled run this one tries again
    priority: NotRequired[int]  # -10 to 10, 0 by default (and for records from before)
    callback: NotRequired[str]  # a URL told when the run ends
    attestation_cid: NotRequired[str]  # its in-toto/SLSA attestation (absent in records from before)
