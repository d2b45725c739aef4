"""Incidents: opening (by hand or by a failing service), the lifecycle, notes, checklist ticks, and the
timeline entries other apps' records add. Every change by a person is permission-checked and audited."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from hadr_portal.core.audit import audit_record
from hadr_portal.core.dashboard_version import dashboard_invalidate
from hadr_portal.core.models import AuditEntry, Operation
from hadr_portal.core.permissions import Action, require
from hadr_portal.databases.models import Cluster, LeaderChange
from hadr_portal.status.models import AlertDelivery, CheckResult, Service, State, Transition

from .models import Incident, Severity, TimelineEntry
from .recovery import service_targets

if TYPE_CHECKING:
    from hadr_portal.core.permissions import Actor

Status = Incident.Status
TIER_SEVERITY = {1: Severity.SEV1, 2: Severity.SEV2}
STAMPS = {Status.ACKNOWLEDGED: "acknowledged_at", Status.MITIGATED: "mitigated_at", Status.RESOLVED: "resolved_at"}


class IncidentError(Exception):
    """A request about an incident that cannot be honoured; the message is for the person."""


def _actor_name(actor: Actor | None) -> str:
    return actor.get_username() if actor is not None and actor.is_authenticated else "system"


def timeline_add(incident: Incident, kind: str, text: str, *, actor: Actor | None = None, **links: object) -> None:
    """One entry; an entry for a record already on this timeline (transition, operation, alert) is skipped."""
    try:
        with transaction.atomic():
            TimelineEntry.objects.create(
                incident=incident, kind=kind, text=text[:4000], actor_name=_actor_name(actor), **links
            )
    except IntegrityError:
        return


def incident_changed(incident: Incident, *, actor: Actor | None, action: str, address: str | None, detail: str) -> None:
    audit_record(
        actor=actor,
        action=f"incident.{action}",
        outcome=AuditEntry.Outcome.SUCCESS,
        target=incident.target,
        address=address,
        detail=detail,
    )
    transaction.on_commit(dashboard_invalidate)  # the dashboard lists open incidents


# What a person writes is kept whole or refused with the limit, never cut.
TITLE_MAX_LENGTH = Incident._meta.get_field("title").max_length or 200
NOTE_MAX_LENGTH = 4000


def incident_open(
    *,
    title: str,
    severity: str,
    service: Service | None,
    actor: Actor,
    address: str | None = None,
    runbook: str = "",
    began_at: datetime | None = None,
) -> Incident:
    """Open an incident by hand (manage_incidents). A service that already has an open one is refused with it."""
    require(actor, Action.MANAGE_INCIDENTS)
    if severity not in Severity.values:
        raise IncidentError(f"Unknown severity {severity!r}.")
    if len(title.strip()) > TITLE_MAX_LENGTH:
        raise IncidentError(f"The title is {len(title.strip())} characters long; at most {TITLE_MAX_LENGTH}.")
    now = timezone.now()
    with transaction.atomic():
        try:
            with transaction.atomic():
                incident = Incident.objects.create(
                    title=title.strip() or "Incident",
                    severity=severity,
                    service=service,
                    runbook=runbook or (service.runbook if service else ""),
                    role=service.owner_role if service else "",
                    opened_by=_actor_name(actor),
                    began_at=min(began_at or now, now),
                    opened_at=now,
                )
        except IntegrityError:
            raise IncidentError(
                f"{service.display_name if service else 'This service'} already has an open incident."
            ) from None
        timeline_add(incident, TimelineEntry.Kind.STATUS, f"Opened by hand: {incident.title}", actor=actor)
        incident_changed(incident, actor=actor, action="open", address=address, detail=incident.title)
    return incident


def _failure_began(transition: Transition) -> datetime:
    """The first failing result of the check behind the transition since its last good one."""
    check = transition.health_check
    if check is None:
        return transition.at
    results = CheckResult.objects.filter(health_check=check, at__lte=transition.at)
    last_good = results.filter(outcome=State.UP).order_by("-at").values_list("at", flat=True).first()
    failing = results.exclude(outcome=State.UP)
    if last_good:
        failing = failing.filter(at__gt=last_good)
    first = failing.order_by("at").values_list("at", flat=True).first()
    return first or transition.at


def incident_on_transition(*, transition: Transition) -> Incident | None:
    """A service went down: open its incident, or join the open one. Any other transition of a service with an
    open incident goes on that incident's timeline."""
    service = transition.service
    text = f"{service.display_name}: {transition.from_state} → {transition.to_state} ({transition.reason})"
    with transaction.atomic():
        Service.objects.select_for_update().filter(pk=service.pk).first()  # one opener at a time per service
        incident = Incident.objects.filter(service=service).exclude(status=Status.RESOLVED).first()
        if incident is None and transition.to_state == State.DOWN:
            incident = Incident.objects.create(
                title=f"{service.display_name} is down",
                severity=TIER_SEVERITY.get(service.tier, Severity.SEV3),
                service=service,
                runbook=service.runbook,
                role=service.owner_role,
                opened_by="system",
                began_at=_failure_began(transition),
                opened_at=transition.at,
            )
            incident_changed(incident, actor=None, action="open", address=None, detail=f"opened by a check: {text}")
        elif incident is not None and transition.to_state == State.DOWN:
            text = f"Failed again — joined this incident. {text}"
        if incident is not None:
            timeline_add(incident, TimelineEntry.Kind.TRANSITION, text, at=transition.at, transition=transition)
    return incident


def incident_on_cluster_without_primary(*, cluster: Cluster, detail: str) -> Incident:
    """A failover stopped half-way and left the cluster with no writable primary: open an incident on the service
    that watches its nodes (the most important one), or join the one open there."""
    now = timezone.now()
    with transaction.atomic():
        incident = _cluster_incident(cluster, f"Cluster {cluster.name} has no writable primary", detail, now)
        timeline_add(incident, TimelineEntry.Kind.STATUS, detail, at=now)
    return incident


def incident_on_leader_change(*, change: LeaderChange) -> Incident | None:
    """An automatic failover (a leader change nobody asked the portal for) opens an incident by itself, with the
    change's timeline so far and what the write probe measured; a switchover or failover asked for opens none."""
    if change.cause != LeaderChange.Cause.AUTOMATIC:
        return None
    cluster = change.cluster
    lost = f"{change.rows_lost} of {change.rows_checked} probe rows lost" if change.rows_lost is not None else ""
    rto = f"writes back after {change.rto_seconds:.1f} s" if change.rto_seconds is not None else ""
    detail = f"Automatic failover of {cluster.name}: {change.old_leader or '?'} → {change.new_leader}" + (
        f" ({', '.join(filter(None, (rto, lost)))})" if rto or lost else ""
    )
    with transaction.atomic():
        incident = _cluster_incident(
            cluster, f"Automatic failover of cluster {cluster.name}", detail, change.detected_at
        )
        if incident.leader_change_id is None:
            Incident.objects.filter(pk=incident.pk).update(leader_change=change)
            incident.leader_change = change
        for event in change.events:
            timeline_add(incident, TimelineEntry.Kind.STATUS, event["what"], at=datetime.fromisoformat(event["at"]))
    return incident


def incident_on_leader_change_event(*, change: LeaderChange, what: str, at: datetime) -> None:
    """What followed an automatic failover (replicas following, the old leader back or not) joins its incident."""
    for incident in Incident.objects.filter(leader_change=change):
        timeline_add(incident, TimelineEntry.Kind.STATUS, what, at=at)


def _cluster_incident(cluster: Cluster, title: str, detail: str, began_at: datetime) -> Incident:
    """The open incident of the service that watches the cluster's nodes (the most important one), or a new one
    with that service's severity, runbook and role. Call it inside a transaction."""
    service = Service.objects.filter(checks__node__cluster=cluster).order_by("tier", "name").first()
    if service is not None:
        Service.objects.select_for_update().filter(pk=service.pk).first()  # one opener at a time per service
    open_one = Incident.objects.exclude(status=Status.RESOLVED).filter(service=service).first() if service else None
    if open_one is not None:
        return open_one
    now = timezone.now()
    incident = Incident.objects.create(
        title=title,
        severity=TIER_SEVERITY.get(service.tier, Severity.SEV3) if service else Severity.SEV1,
        service=service,
        runbook=service.runbook if service else "database-problem",
        role=service.owner_role if service else "DBA",
        opened_by="system",
        began_at=min(began_at, now),
        opened_at=now,
    )
    incident_changed(incident, actor=None, action="open", address=None, detail=detail)
    return incident


def incident_status_set(*, incident: Incident, status: str, actor: Actor, address: str | None = None) -> Incident:
    """Move forward (triggered → acknowledged → mitigated → resolved); on resolve, a postmortem draft is written."""
    require(actor, Action.MANAGE_INCIDENTS)
    from .postmortem import postmortem_draft

    with transaction.atomic():
        incident = Incident.objects.select_for_update().get(pk=incident.pk)
        if status not in Status.values:
            raise IncidentError(f"Unknown status {status!r}.")
        if Incident.ORDER.index(Status(status)) <= Incident.ORDER.index(Status(incident.status)):
            raise IncidentError(f"The incident is already {incident.get_status_display().lower()}.")
        now = timezone.now()
        incident.status = status
        for later in Incident.ORDER[1 : Incident.ORDER.index(Status(status)) + 1]:
            if getattr(incident, STAMPS[later]) is None:
                setattr(incident, STAMPS[later], now)
        if incident.responsible is None and actor.is_authenticated:
            incident.responsible = actor
        incident.save()
        timeline_add(incident, TimelineEntry.Kind.STATUS, f"{incident.get_status_display()}", actor=actor)
        if status == Status.RESOLVED and not incident.postmortem:
            incident.postmortem = postmortem_draft(incident)
            incident.save(update_fields=["postmortem"])
        incident_changed(incident, actor=actor, action=status, address=address, detail=incident.title)
    return incident


def incident_update(
    *,
    incident: Incident,
    actor: Actor,
    severity: str,
    role: str,
    responsible_id: int | None,
    address: str | None = None,
) -> Incident:
    """Severity, responsible role and person."""
    require(actor, Action.MANAGE_INCIDENTS)
    incident.severity, incident.role, incident.responsible_id = severity, role, responsible_id
    with transaction.atomic():
        incident.save(update_fields=["severity", "role", "responsible"])
        who = incident.responsible.get_username() if incident.responsible else "nobody"
        text = f"Severity {incident.get_severity_display()}, role {incident.role or '—'}, responsible {who}"
        timeline_add(incident, TimelineEntry.Kind.STATUS, text, actor=actor)
        incident_changed(incident, actor=actor, action="update", address=address, detail=text)
    return incident


def incident_note_add(*, incident: Incident, text: str, actor: Actor, address: str | None = None) -> None:
    require(actor, Action.MANAGE_INCIDENTS)
    text = text.strip()
    if not text:
        raise IncidentError("Write something first.")
    if len(text) > NOTE_MAX_LENGTH:
        raise IncidentError(f"The note is {len(text)} characters long; at most {NOTE_MAX_LENGTH}: split it in two.")
    with transaction.atomic():
        timeline_add(incident, TimelineEntry.Kind.NOTE, text, actor=actor)
        incident_changed(incident, actor=actor, action="note", address=address, detail=text)


def incident_step_tick(
    *, incident: Incident, number: int, done: bool, label: str, actor: Actor, address: str | None = None
) -> Incident:
    """Tick (or untick) step `number` of the incident's runbook checklist."""
    require(actor, Action.MANAGE_INCIDENTS)
    with transaction.atomic():
        incident = Incident.objects.select_for_update().get(pk=incident.pk)
        key = str(number)
        if done:
            incident.ticks[key] = {"by": _actor_name(actor), "at": timezone.now().isoformat()}
        else:
            incident.ticks.pop(key, None)
        incident.save(update_fields=["ticks"])
        verb = "Done" if done else "Not done after all"
        timeline_add(incident, TimelineEntry.Kind.STEP, f"{verb}: step {number} — {label}"[:300], actor=actor)
        incident_changed(incident, actor=actor, action="step", address=address, detail=f"step {number} {verb.lower()}")
    return incident


def incident_postmortem_save(*, incident: Incident, text: str, actor: Actor, address: str | None = None) -> None:
    require(actor, Action.MANAGE_INCIDENTS)
    with transaction.atomic():
        incident.postmortem = text.replace("\r\n", "\n")
        incident.save(update_fields=["postmortem"])
        incident_changed(incident, actor=actor, action="postmortem", address=address, detail=f"{len(text)} characters")


def incident_on_operation(*, operation: Operation) -> None:
    """An operation started on something an open incident's service depends on: on that timeline, linked."""
    targets = {operation.target}
    restore = getattr(operation, "restore", None) if operation.kind in ("restore", "restore_drill") else None
    for incident in Incident.objects.exclude(status=Status.RESOLVED).exclude(service=None).select_related("service"):
        watched = service_targets(incident.service)  # type: ignore[arg-type]  # not None: excluded above
        policies = {target.removeprefix("backup:") for target in watched if target.startswith("backup:")}
        if targets & watched or (restore is not None and restore.policy.name in policies):
            who = operation.requested_by.get_username() if operation.requested_by else "the portal"
            text = f"{operation.kind_label} #{operation.pk} started on {operation.target} by {who}"
            timeline_add(incident, TimelineEntry.Kind.OPERATION, text, at=operation.created_at, operation=operation)


def incident_on_alert(*, delivery: AlertDelivery) -> None:
    """An alert about an incident's service was sent (or could not be): on its timeline."""
    transition = delivery.transition
    incident = Incident.objects.filter(service_id=transition.service_id).exclude(status=Status.RESOLVED).first()
    if incident is None:
        return
    if delivery.status == AlertDelivery.Status.SENT:
        text = f"Alert sent through {delivery.channel.name} ({delivery.channel.kind}): {transition.to_state}"
    else:
        text = f"Alert through {delivery.channel.name} undelivered after {delivery.attempts} attempts: {delivery.last_error}"
    timeline_add(incident, TimelineEntry.Kind.ALERT, text, at=delivery.sent_at or timezone.now(), alert=delivery)


def incident_url(incident: Incident) -> str:
    return reverse("incidents:detail", kwargs={"pk": incident.pk})
