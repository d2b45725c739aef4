"""The pages and buttons of a Patroni cluster: switchover (now or at a time), manual failover when the leader is
gone, restart and reinitialize a member, pause and resume automatic failover, the dynamic settings. Each is a
typed confirmation, then a step-up code where two-factor sign-in is on, then an operation (patroni_ops)."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_http_methods

from hadr_portal.accounts.stepup import step_up_challenge
from hadr_portal.core.htmx import render_page
from hadr_portal.core.models import Operation
from hadr_portal.core.operation_kinds import OperationConflict, OperationError
from hadr_portal.core.operation_views import operation_response
from hadr_portal.core.operations import client_address
from hadr_portal.core.permissions import Action, action_required, require

from .models import Cluster
from .patroni_ops import (
    HaRefused,
    config_request,
    member_action_request,
    patroni_failover_request,
    pause_request,
    scheduled_time,
    switchover_request,
)
from .patroni_state import DOCUMENTED_SETTINGS, ha_state_refresh


def _patroni_cluster(name: str) -> Cluster:
    cluster = get_object_or_404(Cluster, name=name)
    if not cluster.is_patroni:
        raise Http404(f"Cluster {name} is not managed by Patroni.")
    return cluster


def _guarded(
    request: HttpRequest, *, typed: str, expected: str, what: str, start: Callable[[], Operation]
) -> tuple[HttpResponse | None, str]:
    """Typed confirmation, step-up, then the operation: (the response, or None and the error to show)."""
    if typed != expected:
        return None, f"Type {expected} to confirm: {what.lower()}."
    if challenge := step_up_challenge(request, what=what):
        return challenge, ""
    try:
        operation = start()
    except OperationConflict as exc:
        messages.warning(request, str(exc))
        return (redirect("core:operation", pk=exc.existing.pk) if exc.existing else redirect(request.path)), ""
    except OperationError as exc:
        return None, str(exc)
    messages.success(request, f"{what}: queued (operation #{operation.pk}).")
    return redirect("core:operation", pk=operation.pk), ""


@require_http_methods(["GET", "POST"])
def switchover(request: HttpRequest, name: str) -> HttpResponse:
    """Planned switchover: Patroni's state now, a candidate, an optional time, the cluster's name typed."""
    require(request.user, Action.FAILOVER)
    cluster = _patroni_cluster(name)
    values = {key: request.POST.get(key, "").strip() for key in ("candidate", "scheduled_at", "confirm")}
    error = ""
    if request.method == "POST":
        try:
            when = scheduled_time(values["scheduled_at"])
        except HaRefused as exc:
            error = str(exc)
        else:
            response, error = _guarded(
                request,
                typed=values["confirm"],
                expected=cluster.name,
                what=f"Switch {cluster.name} over",
                start=lambda: switchover_request(
                    cluster=cluster,
                    actor=request.user,
                    candidate=values["candidate"],
                    scheduled_at=when,
                    address=client_address(request),
                ),
            )
            if response is not None:
                return response
    return _ha_page(request, cluster, "databases/switchover.html", values, error)


def patroni_failover(request: HttpRequest, cluster: Cluster) -> HttpResponse:
    """Patroni's manual failover (the Fail over… page of a Patroni cluster): only when there is no leader."""
    values = {key: request.POST.get(key, "").strip() for key in ("candidate", "confirm")}
    error = ""
    if request.method == "POST":
        response, error = _guarded(
            request,
            typed=values["confirm"],
            expected=cluster.name,
            what=f"Fail {cluster.name} over to {values['candidate'] or '?'}",
            start=lambda: patroni_failover_request(
                cluster=cluster, actor=request.user, candidate=values["candidate"], address=client_address(request)
            ),
        )
        if response is not None:
            return response
    return _ha_page(request, cluster, "databases/patroni_failover.html", values, error)


def _ha_page(request: HttpRequest, cluster: Cluster, template: str, values: dict[str, str], error: str) -> HttpResponse:
    state = ha_state_refresh(cluster)  # what Patroni says now, not a second ago
    context = {"cluster": cluster, "ha": state, "values": values, "error": error}
    return render_page(request, template, context, status=400 if error else 200)


@action_required(Action.FAILOVER)
def member_action(request: HttpRequest, name: str, member: str, action: str) -> HttpResponse:
    """Restart or reinitialize one member (reinitialize: its data is replaced by a copy of the leader's)."""
    cluster = _patroni_cluster(name)
    kind = {"restart": "member_restart", "reinit": "member_reinit"}.get(action)
    if kind is None:
        raise Http404(action)
    if kind == "member_reinit":
        require(request.user, Action.REBUILD_REPLICA)
    verb = "Restart" if kind == "member_restart" else "Reinitialize"
    if request.POST.get("confirm") != member:
        messages.error(request, f"Type the member's name, {member}, to {verb.lower()} it.")
        return redirect("databases:clusters")
    if kind == "member_reinit" and (challenge := step_up_challenge(request, what=f"Reinitialize {member}")):
        return challenge
    return operation_response(
        request,
        lambda: member_action_request(
            kind=kind, cluster=cluster, actor=request.user, member=member, address=client_address(request)
        ),
        queued=lambda op: f"{verb} of {member} queued (operation #{op.pk}).",
        back_to="databases:clusters",
    )


@action_required(Action.FAILOVER)
def pause(request: HttpRequest, name: str) -> HttpResponse:
    """Maintenance mode on or off (`paused` = "1" or "0"), the cluster's name typed."""
    cluster = _patroni_cluster(name)
    paused = request.POST.get("paused") == "1"
    what = "Pause automatic failover" if paused else "Resume automatic failover"
    if request.POST.get("confirm") != cluster.name:
        messages.error(request, f"Type the cluster's name, {cluster.name}, to {what.lower()}.")
        return redirect("databases:clusters")
    if challenge := step_up_challenge(request, what=f"{what} of {cluster.name}"):
        return challenge
    return operation_response(
        request,
        lambda: pause_request(cluster=cluster, actor=request.user, paused=paused, address=client_address(request)),
        queued=lambda op: f"{what} of {cluster.name} queued (operation #{op.pk}).",
        back_to="databases:clusters",
    )


@action_required(Action.FAILOVER)
def config(request: HttpRequest, name: str) -> HttpResponse:
    """The documented dynamic settings: only the fields that differ from Patroni's current values are sent."""
    cluster = _patroni_cluster(name)
    if request.POST.get("confirm") != cluster.name:
        messages.error(request, f"Type the cluster's name, {cluster.name}, to change its Patroni configuration.")
        return redirect("databases:clusters")
    current = (cluster.ha_state or {}).get("config", {})
    changes = {}
    for key in DOCUMENTED_SETTINGS:
        value = request.POST.get(key, "").strip()
        if key == "synchronous_mode":
            value = "true" if request.POST.get(key) else "false"
        if value and value.lower() != str(current.get(key)).lower():
            changes[key] = value
    return operation_response(
        request,
        lambda: config_request(cluster=cluster, actor=request.user, changes=changes, address=client_address(request)),
        queued=lambda op: f"Patroni configuration change of {cluster.name} queued (operation #{op.pk}).",
        back_to="databases:clusters",
    )
