"""The portal's own ERROR and CRITICAL log records, kept in the database for the Errors page, redacted.

The handler writes each record on a short-lived connection of its own: the record survives the rollback
of the transaction it was logged in (often the very reason for the error), and a broken request
transaction cannot break the write. It never raises and never recurses: a record logged while it writes
is dropped, a failing database pauses it for `PAUSE_SECONDS`, and at most `RATE_PER_MINUTE` records a
minute per process are kept (a crash loop must not fill the table between two prunings).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback

from django.utils import timezone

from hadr_portal.core.redaction import redact

TABLE = "metrics_loggederror"  # LoggedError's table: no model import while logging is configured
PAUSE_SECONDS = 30.0
RATE_PER_MINUTE = 120


class DatabaseErrorHandler(logging.Handler):
    """Stores ERROR and CRITICAL records in `metrics_loggederror` (see the module's docstring)."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self._writing = threading.local()
        self._lock = threading.Lock()
        self._paused_until = 0.0
        self._window_start = 0.0
        self._window_count = 0

    def _admit(self) -> bool:
        with self._lock:
            now = time.monotonic()
            if now < self._paused_until:
                return False
            if now - self._window_start >= 60:
                self._window_start, self._window_count = now, 0
            self._window_count += 1
            return self._window_count <= RATE_PER_MINUTE

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.ERROR or getattr(self._writing, "active", False) or not self._admit():
            return
        self._writing.active = True
        try:
            _store(record)
        except Exception as exc:  # never let logging break the caller
            from django.db import Error as DatabaseError

            if isinstance(exc, DatabaseError):  # the database is unwell: try again later, not for every record
                with self._lock:
                    self._paused_until = time.monotonic() + PAUSE_SECONDS
        finally:
            self._writing.active = False


def _store(record: logging.LogRecord) -> None:
    from django.db import DEFAULT_DB_ALIAS, connections

    try:
        message = record.getMessage()
    except Exception:  # a bad format string: keep what was given
        message = str(record.msg)
    # the record has passed the redacting filter (settings.LOGGING); redacting again costs little and keeps
    # secrets off the Errors page even for a handler attached without it
    exception = "".join(traceback.format_exception(*record.exc_info)) if record.exc_info else record.exc_text or ""
    message, exception = redact(message), redact(exception)
    operation_id = getattr(record, "operation_id", None)
    default = connections[DEFAULT_DB_ALIAS]
    settings_dict = {
        **default.settings_dict,
        "OPTIONS": {**default.settings_dict.get("OPTIONS", {}), "connect_timeout": 3},
    }
    own = default.__class__(settings_dict, DEFAULT_DB_ALIAS)  # not shared with the request's transaction
    try:
        with own.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {TABLE} (at, level, logger, message, exception, operation_id, process)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [
                    timezone.now(),
                    record.levelname[:8],
                    record.name[:200],
                    message[:4000],
                    exception[:20000],
                    operation_id if isinstance(operation_id, int) else None,
                    f"{socket.gethostname()}:{os.getpid()}"[:200],
                ],
            )
    finally:
        own.close()
