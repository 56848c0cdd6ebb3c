"""Errors of recipes, plans and rendering."""

from __future__ import annotations

from typing import Any

from node.errors import InvalidInput, NodeError


class RecipeError(InvalidInput):
    """A recipe (or the inputs given for it) that cannot be planned; names the node and field."""

    code = "invalid_recipe"

    def __init__(
        self, message: str, *, node: str | None = None, field: str | None = None, **details: Any
    ) -> None:
        where = ".".join(part for part in (f"node {node!r}" if node else "", field or "") if part)
        super().__init__(f"{where}: {message}" if where else message, node=node, field=field, **details)
        self.node = node
        self.field = field


class StepFailed(NodeError):
    """A step could not be computed (its worker reported an error, died or ran out of time)."""

    code = "step_failed"


class StepTimeout(StepFailed):
    code = "step_timeout"


class WorkerKilled(StepFailed):
    """A step's worker was killed from outside (SIGKILL, SIGTERM...): not the step's fault, so
    the step is tried again and the failure not counted. A crash (SIGSEGV, SIGABRT) is the
    step's own failure."""

    code = "worker_killed"


class StepOutOfMemory(StepFailed):
    """A step that did not fit its worker's memory limit (``ARTDAG_WORKER_MEMORY``): refused
    from its estimate before it started, or stopped by the kernel when an allocation failed.
    The step's own failure, counted like any other: the same work needs the same memory."""

    code = "out_of_memory"


class ReceiptMismatch(NodeError):
    """A peer's step entry whose signed receipt does not vouch for it."""

    code = "receipt_mismatch"
