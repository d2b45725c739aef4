"""Queries the incident pages, the escalation and the catalog need."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from .models import Contact, EscalationStep, Incident


def escalation_list(severity: str) -> list[Contact]:
    """The contacts to notify for this severity, first one first."""
    steps = EscalationStep.objects.filter(severity=severity).select_related("contact").order_by("position")
    return [step.contact for step in steps]


def incident_moments(cluster_name: str) -> list[tuple[str, datetime]]:
    """ "Just before incident N opened", for the restore wizard's point step: the last 20 incidents of 30 days, one
    second before each opened (what was committed then is what the data looked like before the trouble)."""
    since = timezone.now() - timedelta(days=30)
    rows = Incident.objects.filter(opened_at__gte=since).order_by("-opened_at")[:20]
    return [
        (
            f"just before incident #{incident.pk} opened ({incident.title[:60]})",
            incident.opened_at - timedelta(seconds=1),
        )
        for incident in rows
    ]
