"""Cluster pages and actions."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_GET

from hadr_portal.core.htmx import render_page
from hadr_portal.core.operations import OperationConflict, OperationError, client_address
from hadr_portal.core.permissions import Action, action_required

from .models import Cluster
from .selectors import clusters_overview
from .services import connectivity_check_request


@require_GET
def cluster_list(request: HttpRequest) -> HttpResponse:
    return render_page(request, "databases/clusters.html", {"clusters": clusters_overview()}, partial="clusters")


@action_required(Action.CONNECTIVITY_CHECK)
def connectivity_check(request: HttpRequest, name: str) -> HttpResponse:
    cluster = get_object_or_404(Cluster, name=name)
    try:
        operation = connectivity_check_request(
            cluster=cluster,
            actor=request.user,
            address=client_address(request),
            sample_seconds=request.POST.get("sample_seconds", 0),
        )
    except OperationConflict as exc:
        messages.warning(request, str(exc))
        if exc.existing is not None:
            return redirect("core:operation", pk=exc.existing.pk)
        return redirect("databases:clusters")
    except OperationError as exc:
        messages.error(request, str(exc))
        return redirect("databases:clusters")
    except PermissionDenied:
        raise
    messages.success(request, f"Connectivity check of {cluster.name} queued (operation #{operation.pk}).")
    return redirect("core:operation", pk=operation.pk)
