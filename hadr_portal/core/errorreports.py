"""Error reports without secrets: Django's exception reporter and its filter, passed through `core.redaction`.

They shape the debug page (HADR_DEBUG, never in production) and any report Django builds of an exception (an
e-mail to admins, if one is ever configured). The production 500 page is templates/500.html, which shows
nothing of the request or the error.
"""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

from django.http import HttpRequest, QueryDict
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

from .redaction import REDACTED, redact


class _Shown:
    """A value as the debug page should print it: its redacted repr, unquoted."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


class RedactingExceptionReporterFilter(SafeExceptionReporterFilter):
    """Django's filter, active even with DEBUG, hiding more settings by name (DSNs, database and broker URLs)
    and passing every shown value through `redact`: request metadata, cookies, POST data, frame variables."""

    cleansed_substitute = REDACTED
    hidden_settings = re.compile(
        "API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|DSN|DATABASE_URL|REDIS_URL|BROKER_URL|CREDENTIAL",
        flags=re.I,
    )

    def is_active(self, request: HttpRequest | None) -> bool:
        return True

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        cleansed = super().cleanse_setting(key, value)
        return redact(cleansed) if isinstance(cleansed, str) else cleansed

    def get_post_parameters(self, request: HttpRequest | None) -> dict[str, Any]:
        parameters = super().get_post_parameters(request)
        if not parameters or not isinstance(parameters, QueryDict):  # {} when there is no request
            return parameters
        cleansed = parameters.copy()
        for key in cleansed:
            cleansed.setlist(
                key, [redact(value) if isinstance(value, str) else value for value in cleansed.getlist(key)]
            )
        return cleansed

    def get_traceback_frame_variables(self, request: HttpRequest | None, tb_frame: Any) -> Any:
        return [
            (name, value if isinstance(value, str) and value == REDACTED else _Shown(redact(_repr(value))))
            for name, value in super().get_traceback_frame_variables(request, tb_frame)
        ]


class RedactingExceptionReporter(ExceptionReporter):
    """Django's reporter with the exception's message, its causes, the URL and the query string redacted."""

    def get_traceback_data(self) -> dict[str, Any]:
        data = super().get_traceback_data()
        for key in ("exception_value", "exception_notes", "request_insecure_uri"):
            if isinstance(data.get(key), str):
                data[key] = redact(data[key])
        for frame in data.get("frames", []):
            if frame.get("exc_cause") is not None:
                frame["exc_cause"] = redact(str(frame["exc_cause"]))
        if "request_GET_items" in data:
            data["request_GET_items"] = [(key, redact(value)) for key, value in data["request_GET_items"]]
        if self.request is not None:  # the page prints request.path_info and the method
            data["request"] = SimpleNamespace(
                path_info=redact(self.request.path_info),
                META={"REQUEST_METHOD": self.request.META.get("REQUEST_METHOD", "")},
            )
        return data


def _repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception as exc:  # a broken __repr__ must not break the report
        return f"<{type(value).__name__}: repr failed: {type(exc).__name__}>"
