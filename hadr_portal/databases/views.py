"""Cluster pages and actions."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET

from hadr_portal.core.htmx import render_page
from hadr_portal.core.operation_views import operation_response
from hadr_portal.core.operations import client_address
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
    return operation_response(
        request,
        lambda: connectivity_check_request(
            cluster=cluster,
            actor=request.user,
            address=client_address(request),
            sample_seconds=request.POST.get("sample_seconds", 0),
        ),
        queued=lambda op: f"Connectivity check of {cluster.name} queued (operation #{op.pk}).",
        back_to="databases:clusters",
    )
