"""What a view answers after asking for an operation: the same everywhere an action button is."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, resolve_url
from django_htmx.http import HttpResponseClientRedirect

from .models import Operation
from .operation_kinds import OperationConflict, OperationError
from .operations import operation_unqueued


def operation_response(
    request: HttpRequest, start: Callable[[], Operation], *, queued: Callable[[Operation], str], back_to: str
) -> HttpResponse:
    """Run `start()`; go to the new operation's page — or to the one already in progress on the same
    target — with a message; on a refusal, back to `back_to` saying why (PermissionDenied propagates: 403).

    A button posting through htmx (one in a cached fragment, which cannot hold a CSRF form field) is sent
    there by a client-side redirect, so the browser shows the whole page rather than swapping it in."""
    try:
        operation = start()
    except OperationConflict as exc:
        messages.warning(request, str(exc))
        return _go(request, resolve_url("core:operation", pk=exc.existing.pk) if exc.existing else back_to)
    except OperationError as exc:
        messages.error(request, str(exc))
        return _go(request, back_to)
    if unqueued := operation_unqueued(operation):  # saved, not lost: it starts when the broker is back
        messages.warning(request, f"{queued(operation)} {unqueued}")
    else:
        messages.success(request, queued(operation))
    return _go(request, resolve_url("core:operation", pk=operation.pk))


def _go(request: HttpRequest, to: str) -> HttpResponse:
    if getattr(request, "htmx", False):
        return HttpResponseClientRedirect(resolve_url(to))
    return redirect(to)
