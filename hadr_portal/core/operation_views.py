"""What a view answers after asking for an operation: the same everywhere an action button is."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from .models import Operation
from .operations import OperationConflict, OperationError


def operation_response(
    request: HttpRequest, start: Callable[[], Operation], *, queued: Callable[[Operation], str], back_to: str
) -> HttpResponse:
    """Run `start()`; go to the new operation's page — or to the one already in progress on the same
    target — with a message; on a refusal, back to `back_to` saying why (PermissionDenied propagates: 403)."""
    try:
        operation = start()
    except OperationConflict as exc:
        messages.warning(request, str(exc))
        return redirect("core:operation", pk=exc.existing.pk) if exc.existing else redirect(back_to)
    except OperationError as exc:
        messages.error(request, str(exc))
        return redirect(back_to)
    messages.success(request, queued(operation))
    return redirect("core:operation", pk=operation.pk)
