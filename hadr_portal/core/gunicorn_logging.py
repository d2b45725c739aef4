"""Gunicorn's logs without secrets: `gunicorn --logger-class hadr_portal.core.gunicorn_logging.RedactingLogger`.

A heartbeat URL carries its check's token (`/push/heartbeat/<token>`), a query string may carry another, and a
header may carry a bearer token: every atom the access log format prints (request line, path, query, referer,
headers) goes through `core.redaction.redact`, and so does every line of the access and error logs (gunicorn's
own messages, e.g. "Error handling request /push/heartbeat/…"). Imports no Django: the master process loads it
before the application.
"""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger, SafeAtoms

from .logging import RedactingFilter
from .redaction import redact


class RedactedAtoms(SafeAtoms):
    """Gunicorn's atoms (case-insensitive, "-" when missing), each redacted when the format asks for it: only
    the atoms a format uses cost anything."""

    def __getitem__(self, key: str) -> Any:
        value = super().__getitem__(key)  # type: ignore[no-untyped-call]  # gunicorn has no annotations
        return redact(value) if isinstance(value, str) else value


class RedactingLogger(Logger):
    """Gunicorn's logger whose access-log atoms are redacted and whose handlers all carry the portal's
    redacting filter."""

    atoms_wrapper_class = RedactedAtoms

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)  # type: ignore[no-untyped-call]  # gunicorn has no annotations
        redacting = RedactingFilter()
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                if not any(isinstance(existing, RedactingFilter) for existing in handler.filters):
                    handler.addFilter(redacting)
