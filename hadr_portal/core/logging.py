"""Structured-log support: every record carries the id of the operation being run, if any."""

from __future__ import annotations

import logging
from contextvars import ContextVar

current_operation_id: ContextVar[int | None] = ContextVar("current_operation_id", default=None)


class OperationContextFilter(logging.Filter):
    """Adds `operation_id` to each record (None outside an operation)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "operation_id"):
            record.operation_id = current_operation_id.get()
        return True
