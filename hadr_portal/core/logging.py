"""Structured-log support: every record carries the id of the operation being run, if any, and no secret."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from .redaction import REDACTED, is_secret_key, redact, redact_mapping

current_operation_id: ContextVar[int | None] = ContextVar("current_operation_id", default=None)


class OperationContextFilter(logging.Filter):
    """Adds `operation_id` to each record (None outside an operation)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "operation_id"):
            record.operation_id = current_operation_id.get()
        return True


# A record's own attributes; anything else on it came from `extra=` (or a filter such as the one above).
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
_FORMATTER = logging.Formatter()


class RedactingFilter(logging.Filter):
    """Passes every record through `core.redaction`: its message (merged with its arguments), its traceback
    (formatted once into `exc_text`, so that no formatter prints the raw one), its stack and its extra fields
    (a field whose name is a secret's, such as `token`, is hidden whole). On every handler in
    settings.LOGGING and on gunicorn's; a record passed through it twice is redacted once."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_redacted", False):
            return True
        record._redacted = True
        if isinstance(record.msg, Mapping):  # a dict logged as structured data
            record.msg = redact_mapping(record.msg)
        else:
            try:
                message = record.getMessage()
            except Exception:  # a bad format string: keep what was given
                message = str(record.msg)
            record.msg = redact(message)
        record.args = None
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = _FORMATTER.formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for name, value in list(vars(record).items()):
            if name not in _RECORD_ATTRIBUTES and not name.startswith("_"):
                setattr(record, name, _extra_redacted(name, value))
        return True


def _extra_redacted(name: str, value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if is_secret_key(name):
        return REDACTED
    if isinstance(value, str | Mapping | list | tuple):
        return redact_mapping(value)
    # an object (a request, a task): a JSON formatter would print its str(), which may hold a path's token
    try:
        return redact(str(value))
    except Exception:
        return type(value).__name__
