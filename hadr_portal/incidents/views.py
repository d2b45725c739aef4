"""Incident pages and actions (thin: the services decide), contacts, priorities and readiness."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_GET, require_http_methods

from hadr_portal.core.htmx import render_page
from hadr_portal.core.operations import client_address
from hadr_portal.core.permissions import Action, Role, action_required, require
from hadr_portal.runbooks.actions import runbook_segments
from hadr_portal.runbooks.documents import markdown_html, runbook_load
from hadr_portal.status.models import Service

from . import escalation, priorities, services
from .models import Contact, Incident, Severity
from .recovery import pitr_drill_trend, readiness_matrix, readiness_of


@require_GET
def incident_list(request: HttpRequest) -> HttpResponse:
    filters = {key: request.GET.get(key, "") for key in ("status", "severity")}
    incidents = Incident.objects.select_related("service", "responsible")
    if filters["status"] == "open":
        incidents = incidents.exclude(status=Incident.Status.RESOLVED)
    elif filters["status"] in Incident.Status.values:
        incidents = incidents.filter(status=filters["status"])
    if filters["severity"] in Severity.values:
        incidents = incidents.filter(severity=filters["severity"])
    page = Paginator(incidents, 50).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "filters": filters,
        "statuses": Incident.Status.choices,
        "severities": Severity.choices,
        "services": Service.objects.order_by("display_name"),
    }
    return render_page(request, "incidents/list.html", context, partial="table")


@action_required(Action.MANAGE_INCIDENTS)
def incident_open(request: HttpRequest) -> HttpResponse:
    named = request.POST.get("service", "")
    service = Service.objects.filter(name=named).first() if named else None
    if named and service is None:
        messages.error(request, f"No service {named!r} in the catalog: choose one from the list, or none.")
        return redirect("incidents:list")
    try:
        incident = services.incident_open(
            title=request.POST.get("title", ""),
            severity=request.POST.get("severity", Severity.SEV2),
            service=service,
            actor=request.user,
            address=client_address(request),
        )
    except services.IncidentError as exc:
        messages.error(request, str(exc))
        return redirect("incidents:list")
    return redirect("incidents:detail", pk=incident.pk)


@require_GET
def incident_detail(request: HttpRequest, pk: int) -> HttpResponse:
    incident = get_object_or_404(
        Incident.objects.select_related("service", "responsible", "leader_change__cluster"), pk=pk
    )
    runbook = runbook_load(incident.runbook) if incident.runbook else None
    context = {
        "incident": incident,
        "timeline": incident.timeline.select_related("operation").order_by("at", "id"),
        "runbook": runbook,
        "segments": runbook_segments(
            runbook,
            user=request.user,
            service=incident.service.name if incident.service else None,
            ticks=incident.ticks,
        )
        if runbook
        else [],
        "readiness": readiness_of(incident.service) if incident.service else None,
        "next_statuses": Incident.ORDER[Incident.ORDER.index(Incident.Status(incident.status)) + 1 :],
        "next_contact": _next_contact(incident),
        "severities": Severity.choices,
        "roles": [role.value for role in Role],
        "people": get_user_model().objects.filter(is_active=True).order_by("username"),
        "postmortem_html": markdown_html(incident.postmortem),
        "refresh_seconds": settings.DASHBOARD_REFRESH_SECONDS,
    }
    return render_page(request, "incidents/detail.html", context, partial="timeline")


def _next_contact(incident: Incident) -> Contact | None:
    contacts = escalation.escalation_list(incident.severity)
    return contacts[incident.escalation_level] if incident.escalation_level < len(contacts) else None


def _act(request: HttpRequest, pk: int, change: Callable[[Incident], object]) -> HttpResponse:
    """Run one change on the incident; a refusal is a message. Back to the incident's page either way."""
    incident = get_object_or_404(Incident, pk=pk)
    try:
        change(incident)
    except (services.IncidentError, ValueError) as exc:
        messages.error(request, str(exc))
    return redirect("incidents:detail", pk=pk)


@action_required(Action.MANAGE_INCIDENTS)
def incident_status(request: HttpRequest, pk: int) -> HttpResponse:
    status = request.POST.get("status", "")
    return _act(
        request,
        pk,
        lambda incident: services.incident_status_set(
            incident=incident, status=status, actor=request.user, address=client_address(request)
        ),
    )


@action_required(Action.MANAGE_INCIDENTS)
def incident_update(request: HttpRequest, pk: int) -> HttpResponse:
    severity, role = request.POST.get("severity", ""), request.POST.get("role", "")
    responsible = request.POST.get("responsible", "")

    def change(incident: Incident) -> object:
        if severity not in Severity.values or (role and role not in {r.value for r in Role}):
            raise ValueError("Choose a severity and a role from the lists.")
        person = get_user_model().objects.filter(pk=responsible).first() if responsible.isdigit() else None
        return services.incident_update(
            incident=incident,
            actor=request.user,
            severity=severity,
            role=role,
            responsible_id=person.pk if person else None,
            address=client_address(request),
        )

    return _act(request, pk, change)


@action_required(Action.MANAGE_INCIDENTS)
def incident_note(request: HttpRequest, pk: int) -> HttpResponse:
    text = request.POST.get("text", "")
    return _act(
        request,
        pk,
        lambda incident: services.incident_note_add(
            incident=incident, text=text, actor=request.user, address=client_address(request)
        ),
    )


@action_required(Action.MANAGE_INCIDENTS)
def incident_step(request: HttpRequest, pk: int, number: int) -> HttpResponse:
    incident = get_object_or_404(Incident, pk=pk)
    runbook = runbook_load(incident.runbook) if incident.runbook else None
    step = next((step for step in runbook.steps if step.number == number), None) if runbook else None
    if step is None:
        messages.error(request, f"The runbook has no step {number}.")
        return redirect("incidents:detail", pk=pk)
    return _act(
        request,
        pk,
        lambda incident: services.incident_step_tick(
            incident=incident,
            number=number,
            done=request.POST.get("done") == "on",
            label=step.text,
            actor=request.user,
            address=client_address(request),
        ),
    )


@action_required(Action.MANAGE_INCIDENTS)
def incident_escalate(request: HttpRequest, pk: int) -> HttpResponse:
    def change(incident: Incident) -> object:
        notices = escalation.incident_escalate(incident=incident, actor=request.user, address=client_address(request))
        messages.success(request, f"Escalated to {notices[0].contact.name}." if notices else "Escalated.")
        return notices

    return _act(request, pk, change)


@require_http_methods(["GET", "POST"])
def incident_postmortem(request: HttpRequest, pk: int) -> HttpResponse:
    """The postmortem in Markdown: shown, edited (manage_incidents), or downloaded (`?download=1`)."""
    if request.method == "POST":
        require(request.user, Action.MANAGE_INCIDENTS)
    incident = get_object_or_404(Incident, pk=pk)
    if request.method == "POST":
        return _act(
            request,
            pk,
            lambda incident: services.incident_postmortem_save(
                incident=incident,
                text=request.POST.get("text", ""),
                actor=request.user,
                address=client_address(request),
            ),
        )
    if request.GET.get("download"):
        response = HttpResponse(incident.postmortem, content_type="text/markdown; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="incident-{incident.pk}-postmortem.md"'
        return response
    return redirect("incidents:detail", pk=pk)


@require_GET
def contacts_page(request: HttpRequest) -> HttpResponse:
    lists = [(label, escalation.escalation_list(value)) for value, label in Severity.choices]
    context = {
        "contacts": Contact.objects.all(),
        "lists": lists,
        "reminder_minutes": settings.ESCALATION_REMINDER_MINUTES,
    }
    return render_page(request, "incidents/contacts.html", context)


@require_http_methods(["GET", "POST"])
def priorities_page(request: HttpRequest) -> HttpResponse:
    """The recovery order; POST (Product Manager, DevOps) saves the order and reasons as submitted."""
    if request.method == "POST":
        require(request.user, Action.EDIT_PRIORITIES)
        order = request.POST.getlist("service")
        reasons = {name: request.POST.get(f"reason-{name}", "") for name in order}
        try:
            priorities.priorities_save(
                order=order, reasons=reasons, actor=request.user, address=client_address(request)
            )
            messages.success(request, "Recovery priorities saved.")
        except ValueError as exc:
            messages.error(request, str(exc))
        return redirect("incidents:priorities")
    return _priorities_page(request)


def _priorities_page(request: HttpRequest) -> HttpResponse:
    context = {"priorities": priorities.priorities_list(), "readiness": {r.service.pk: r for r in readiness_matrix()}}
    return render_page(request, "incidents/priorities.html", context, partial="list")


@action_required(Action.EDIT_PRIORITIES)
def priority_move(request: HttpRequest, name: str) -> HttpResponse:
    by = -1 if request.POST.get("direction") == "up" else 1
    try:
        priorities.priority_move(name=name, by=by, actor=request.user, address=client_address(request))
    except ValueError as exc:
        messages.error(request, str(exc))
    if getattr(request, "htmx", False):
        return _priorities_page(request)
    return redirect("incidents:priorities")


@require_GET
def readiness_page(request: HttpRequest) -> HttpResponse:
    trend = pitr_drill_trend()
    context = {
        "rows": readiness_matrix(),
        "pitr_drills": trend,
        "rto_points": [(row.restore.created_at, row.rto) for row in trend if row.rto is not None],
        "rpo_points": [(row.restore.created_at, row.rpo) for row in trend if row.rpo is not None],
    }
    return render_page(request, "incidents/readiness.html", context, partial="matrix")
