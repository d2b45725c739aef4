"""Every refused attempt is in the audit log, including those refused by a view's permission check."""

from __future__ import annotations

from collections.abc import Callable

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

from .audit import audit_record, refusal_recorded
from .models import AuditEntry
from .operations import client_address


class RefusalAuditMiddleware:
    """A PermissionDenied leaving a view becomes a *refused* audit entry (then Django answers 403) —
    unless the code that refused already wrote one for this request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = refusal_recorded.set(False)
        try:
            return self.get_response(request)
        finally:
            refusal_recorded.reset(token)

    def process_exception(self, request: HttpRequest, exception: Exception) -> None:
        if isinstance(exception, PermissionDenied) and not refusal_recorded.get():
            match = request.resolver_match
            audit_record(
                actor=request.user,
                action=f"view.{match.view_name}" if match else "view",
                outcome=AuditEntry.Outcome.REFUSED,
                target=request.path,
                parameters={"method": request.method},
                address=client_address(request),
                detail=str(exception),
            )
