"""Cluster pages and actions."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_GET, require_http_methods

from hadr_portal.accounts.stepup import step_up_challenge
from hadr_portal.core import registry
from hadr_portal.core.htmx import render_page
from hadr_portal.core.operation_kinds import OperationConflict, OperationError
from hadr_portal.core.operation_views import operation_response
from hadr_portal.core.operations import client_address
from hadr_portal.core.permissions import Action, action_required, require

from .failover import failover_request
from .failover_plan import MIN_REASON_LENGTH, failover_plan
from .ha_views import patroni_failover
from .models import Cluster
from .rebuild import rebuild_request
from .selectors import clusters_overview
from .services import connectivity_check_request


@require_GET
def cluster_list(request: HttpRequest) -> HttpResponse:
    clusters = clusters_overview()
    for item in clusters:  # what the apps above this one show on a cluster's card (backups: WAL archiving)
        item.panels = [html for panel in registry.cluster_panels if (html := panel.render(item.cluster, request))]
    return render_page(request, "databases/clusters.html", {"clusters": clusters}, partial="clusters")


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


@require_http_methods(["GET", "POST"])
def failover(request: HttpRequest, name: str) -> HttpResponse:
    """The guided failover: live pre-checks, then a typed confirmation. GET shows, POST (DBA) queues."""
    require(request.user, Action.FAILOVER)
    cluster = get_object_or_404(Cluster, name=name)
    if cluster.is_patroni:
        return patroni_failover(request, cluster)
    values = {
        key: request.POST.get(key, "").strip() for key in ("to", "confirm", "override_reason", "isolation_reason")
    }
    error = ""
    if request.method == "POST":
        if values["confirm"] != cluster.name:
            error = f"Type the cluster's name, {cluster.name}, to confirm the failover."
        elif challenge := step_up_challenge(request, what=f"Fail over {cluster.name}"):
            return challenge  # a fresh two-factor code first
        else:
            try:
                operation = failover_request(
                    cluster=cluster,
                    actor=request.user,
                    to=values["to"],
                    override_reason=values["override_reason"],
                    isolation_reason=values["isolation_reason"],
                    address=client_address(request),
                )
            except OperationConflict as exc:
                messages.warning(request, str(exc))
                return redirect("core:operation", pk=exc.existing.pk) if exc.existing else redirect(request.path)
            except OperationError as exc:
                error = str(exc)
            else:
                messages.success(request, f"Failover of {cluster.name} to {operation.parameters['to']} queued.")
                return redirect("core:operation", pk=operation.pk)
    plan = failover_plan(cluster, to=values["to"] or request.GET.get("to") or None)
    context = {"plan": plan, "values": values, "error": error, "min_reason": MIN_REASON_LENGTH}
    status = 400 if error else 200
    return render_page(request, "databases/failover.html", context, partial="plan", status=status)


@action_required(Action.REBUILD_REPLICA)
def rebuild(request: HttpRequest, name: str, node: str) -> HttpResponse:
    cluster = get_object_or_404(Cluster, name=name)
    target = get_object_or_404(cluster.nodes, name=node)
    if request.POST.get("confirm") != target.name:
        messages.error(request, f"Type the node's name, {target.name}, to rebuild it: its data will be replaced.")
        return redirect("databases:clusters")
    return operation_response(
        request,
        lambda: rebuild_request(cluster=cluster, node=target, actor=request.user, address=client_address(request)),
        queued=lambda op: f"Rebuild of {target.name} as a replica queued (operation #{op.pk}).",
        back_to="databases:clusters",
    )
