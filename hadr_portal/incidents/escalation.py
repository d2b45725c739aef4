"""Manual escalation, and reminders until someone acknowledges.

Each severity has an ordered list of contacts. "Escalate" notifies the next one by every channel the contact
has (e-mail, webhook), through the same sending code as alerts, with retries; every notice and its outcome
goes on the timeline. While an incident stays *triggered*, the portal escalates by itself every
HADR_ESCALATION_REMINDER_MINUTES; acknowledging stops that. A channel that is down never blocks the incident:
its notice ends undelivered, with the error, and the people carry on.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from hadr_portal.core.delivery import delivery_attempt
from hadr_portal.core.dispatch import task_send_on_commit
from hadr_portal.core.permissions import Action, require
from hadr_portal.status.alerts import message_send

from .models import EscalationNotice, Incident, TimelineEntry
from .selectors import escalation_list
from .services import IncidentError, incident_changed, incident_url, timeline_add

if TYPE_CHECKING:
    from hadr_portal.core.permissions import Actor


def incident_escalate(
    *,
    incident: Incident,
    actor: Actor | None,
    address: str | None = None,
    reminder: bool = False,
    now: datetime | None = None,
) -> list[EscalationNotice]:
    """Notify the next contact of the incident's escalation list. `actor=None`: a reminder from the portal."""
    if actor is not None:
        require(actor, Action.MANAGE_INCIDENTS)
    with transaction.atomic():
        incident = Incident.objects.select_for_update().get(pk=incident.pk)
        contacts = escalation_list(incident.severity)
        if incident.escalation_level >= len(contacts):
            raise IncidentError(
                f"Everyone on the {incident.get_severity_display()} escalation list has been notified"
                if contacts
                else f"The {incident.get_severity_display()} escalation list is empty: add contacts to it."
            )
        contact = contacts[incident.escalation_level]
        channels = [channel for channel, reach in (("email", contact.email), ("webhook", contact.webhook)) if reach]
        notices = [
            EscalationNotice.objects.create(incident=incident, contact=contact, channel=channel, reminder=reminder)
            for channel in channels
        ]
        incident.escalation_level += 1
        incident.escalated_at = now or timezone.now()
        incident.save(update_fields=["escalation_level", "escalated_at"])
        how = " and ".join(channels) or "no e-mail or webhook on record"
        why = "reminder: nobody acknowledged" if reminder else "escalated"
        text = (
            f"{why.capitalize()} to {contact.name} ({how}); phone {contact.phone or '—'}, hours {contact.hours or '—'}"
        )
        timeline_add(incident, TimelineEntry.Kind.ESCALATION, text, actor=actor)
        incident_changed(incident, actor=actor, action="escalate", address=address, detail=text)
        for notice in notices:
            task_send_on_commit("hadr_portal.incidents.tasks.notice_deliver", args=[notice.pk], queue="default")
    return notices


def notice_message(notice: EscalationNotice) -> tuple[str, str, dict[str, Any]]:
    incident = notice.incident
    link = settings.PORTAL_URL + incident_url(incident)
    service = incident.service.display_name if incident.service else "—"
    subject = f"[{incident.severity.upper()}] Incident #{incident.pk}: {incident.title} — you are needed"
    text = (
        f"{notice.contact.name}, you are on the {incident.get_severity_display()} escalation list.\n\n"
        f"Incident #{incident.pk}: {incident.title}\nStatus: {incident.get_status_display()} · service: {service}\n"
        f"Runbook: {incident.runbook or '—'}\nOpen it and acknowledge: {link}\n"
    )
    payload = {
        "text": f":rotating_light: {subject}\n<{link}|Open the incident>",
        "incident": incident.pk,
        "title": incident.title,
        "severity": incident.severity,
        "status": incident.status,
        "contact": notice.contact.name,
        "url": link,
    }
    return subject, text, payload


def notice_deliver(*, notice_id: int) -> EscalationNotice:
    """One attempt. Raises DeliveryFailed (the task retries) until HADR_ALERT_MAX_ATTEMPTS run out."""
    notice = EscalationNotice.objects.select_related("incident__service", "contact").get(pk=notice_id)
    if notice.status != EscalationNotice.Status.PENDING:
        return notice
    subject, text, payload = notice_message(notice)
    address = notice.contact.email if notice.channel == "email" else notice.contact.webhook
    delivery_attempt(
        notice,
        lambda: message_send(kind=notice.channel, address=address, subject=subject, text=text, payload=payload),
        sent=EscalationNotice.Status.SENT,
        failed=EscalationNotice.Status.FAILED,
    )
    if notice.status == EscalationNotice.Status.FAILED:
        text = f"Could not reach {notice.contact.name} by {notice.channel} after {notice.attempts} attempts: "
        timeline_add(notice.incident, TimelineEntry.Kind.ESCALATION, text + notice.last_error, notice=notice)
    else:
        retried = f" (attempt {notice.attempts})" if notice.attempts > 1 else ""
        text = f"{notice.contact.name} notified by {notice.channel}{retried}"
        timeline_add(notice.incident, TimelineEntry.Kind.ESCALATION, text, at=notice.sent_at, notice=notice)
    return notice


def escalations_remind(*, now: datetime | None = None) -> list[Incident]:
    """Escalate every incident still *triggered* HADR_ESCALATION_REMINDER_MINUTES after its last escalation."""
    now = now or timezone.now()
    due = now - timedelta(minutes=settings.ESCALATION_REMINDER_MINUTES)
    reminded = []
    waiting = Incident.objects.filter(status=Incident.Status.TRIGGERED).filter(
        Q(escalated_at__lte=due) | Q(escalated_at=None, opened_at__lte=due)
    )
    for incident in waiting:
        if incident.escalation_level < len(escalation_list(incident.severity)):
            incident_escalate(incident=incident, actor=None, reminder=True, now=now)
            reminded.append(incident)
    return reminded
