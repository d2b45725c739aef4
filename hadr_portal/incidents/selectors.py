"""Queries the incident pages, the escalation and the catalog need."""

from __future__ import annotations

from .models import Contact, EscalationStep


def escalation_list(severity: str) -> list[Contact]:
    """The contacts to notify for this severity, first one first."""
    steps = EscalationStep.objects.filter(severity=severity).select_related("contact").order_by("position")
    return [step.contact for step in steps]
