"""The node's log lines: plain text (the default) or JSON lines (``ARTDAG_LOG_FORMAT=json``),
with the ids of what the node was working on.

The ids travel in context variables, set where the work starts: the node id when a node opens,
the run id in the task that renders a run, the step id (its cache id, the step's identity) in
the task that computes or waits for a step. asyncio copies the context into every task it
creates, so the tasks a run or a step starts log with its ids, and several nodes in one process
(tests) each log with their own node id. :class:`ContextFilter` puts them on every record;
the JSON formatter writes those known (text lines stay as they were). JSON is written by
python-json-logger, the maintained formatter of the stdlib's ``logging`` records (one object a
line, exceptions and ``extra`` fields included), so no hand-made escaping.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from typing import TextIO

from pythonjsonlogger.json import JsonFormatter

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CONTEXT_FIELDS = ("node_id", "run_id", "step_id")

node_id: ContextVar[str] = ContextVar("log_node_id", default="")
run_id: ContextVar[str] = ContextVar("log_run_id", default="")
step_id: ContextVar[str] = ContextVar("log_step_id", default="")
_VARS = {"node_id": node_id, "run_id": run_id, "step_id": step_id}


class ContextFilter(logging.Filter):
    """Puts the ids the current context knows on each record (``record.run_id`` ...)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _VARS.items():
            value = var.get()
            if value and not hasattr(record, name):  # an ``extra`` given by the caller wins
                setattr(record, name, value)
        return True


def json_formatter() -> logging.Formatter:
    """One JSON object a line: ``level``, ``logger``, ``message``, the ids known, any ``extra``
    fields (the access log's method, path and status) and ``time`` (ISO 8601, UTC, to the
    microsecond: what log shippers parse without being told a format)."""
    return JsonFormatter(
        "{levelname}{name}{message}",
        style="{",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",
    )


def configure(level: str, log_format: str = "text", stream: TextIO | None = None) -> logging.Handler:
    """Send every log record to ``stream`` (stderr) at ``level``, as text or JSON lines; the
    handler, which replaces the root logger's handlers."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(json_formatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
