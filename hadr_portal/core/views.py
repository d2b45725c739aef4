"""Core pages: dashboard, operations, audit log, portal health. Thin: selectors and services do the work."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from . import registry, selectors
from .health import portal_health
from .htmx import HtmxHttpRequest, render_page
from .models import AuditEntry, Operation
from .operation_kinds import OperationError
from .operations import client_address, operation_cancel
from .permissions import Role, permission_matrix


@login_not_required
@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """For load balancers and `make up`: 200 when everything works, 503 otherwise."""
    health = portal_health()
    return JsonResponse(health, status=200 if health["ok"] else 503)


@require_GET
def operations(request: HttpRequest) -> HttpResponse:
    filters = {key: request.GET.get(key, "").strip() for key in ("status", "kind", "q")}
    page = Paginator(selectors.operations_list(filters, user=request.user), 50).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "filters": filters,
        "kinds": sorted((k.name, k.label) for k in registry.operation_kinds),
        "statuses": Operation.Status.choices,
        "polling": any(op.is_active for op in page),
    }
    return render_page(request, "core/operations.html", context, partial="table")


@require_GET
def operation_detail(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        operation, log_lines = selectors.operation_with_log(pk, user=request.user)
    except Operation.DoesNotExist:
        raise Http404("No such operation") from None
    context = {"operation": operation, "log_lines": log_lines}
    return render_page(request, "core/operation_detail.html", context, partial="progress")


@require_POST
def operation_cancel_view(request: HttpRequest, pk: int) -> HttpResponse:
    """Cancel: people with `cancel_operation`, and whoever requested the operation (the service decides)."""
    try:
        operation_cancel(operation_id=pk, actor=request.user, address=client_address(request))
    except Operation.DoesNotExist:
        raise Http404("No such operation") from None
    except OperationError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Cancellation of operation #{pk} recorded.")
    return redirect("core:operation", pk=pk)


@require_GET
def audit_log(request: HtmxHttpRequest) -> HttpResponse:
    filters = {
        key: request.GET.get(key, "").strip() for key in ("actor", "action", "target", "outcome", "since", "until")
    }
    administrator = request.user.is_superuser  # only they see the names typed at failed sign-ins
    entries, errors = selectors.audit_entries(filters, administrator=administrator)
    page = Paginator(entries, 50).get_page(request.GET.get("page"))
    page.object_list = list(page.object_list)
    selectors.audit_entries_shown(page.object_list, administrator=administrator)
    context = {"page": page, "filters": filters, "errors": errors, "outcomes": AuditEntry.Outcome.choices}
    # htmx does not swap 4xx responses: the fragment carries the error message with a 200 instead.
    status = 400 if errors and not request.htmx else 200
    return render_page(request, "core/audit_log.html", context, partial="table", status=status)


@require_GET
def roles(request: HttpRequest) -> HttpResponse:
    return render_page(request, "core/roles.html", {"roles": list(Role), "matrix": permission_matrix()})
