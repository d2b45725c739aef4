"""Queries the core pages need."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone

from .models import AuditEntry, Operation


def _day_start(value: str) -> datetime | None:
    try:
        day = datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        return None
    return timezone.make_aware(datetime.combine(day, time.min))


def audit_entries(filters: dict[str, Any]) -> tuple[QuerySet[AuditEntry], list[str]]:
    """Audit entries matching the page's filters, and the filter errors for the operator."""
    entries = AuditEntry.objects.all()
    errors: list[str] = []
    if actor := filters.get("actor"):
        entries = entries.filter(actor_name__icontains=actor)
    if action := filters.get("action"):
        entries = entries.filter(action__icontains=action)
    if target := filters.get("target"):
        entries = entries.filter(target__icontains=target)
    if outcome := filters.get("outcome"):
        if outcome in AuditEntry.Outcome.values:
            entries = entries.filter(outcome=outcome)
        else:
            errors.append(f"Unknown outcome {outcome!r}.")
    for name, lookup in (("since", "at__gte"), ("until", "at__lt")):
        if value := filters.get(name):
            start = _day_start(value)
            if start is None:
                errors.append(f"{name.title()}: {value!r} is not a date (use YYYY-MM-DD).")
            else:
                entries = entries.filter(**{lookup: start if name == "since" else start + timedelta(days=1)})
    return entries, errors


def operations_list(filters: dict[str, Any]) -> QuerySet[Operation]:
    operations = Operation.objects.select_related("requested_by")
    if status := filters.get("status"):
        operations = (
            operations.filter(status=status) if status != "active" else operations.filter(status__in=Operation.ACTIVE)
        )
    if kind := filters.get("kind"):
        operations = operations.filter(kind=kind)
    if q := filters.get("q"):
        operations = operations.filter(Q(target__icontains=q) | Q(error__icontains=q))
    return operations


def operation_with_log(operation_id: int) -> tuple[Operation, list[Any]]:
    operation = Operation.objects.select_related("requested_by").get(pk=operation_id)
    return operation, list(operation.log_lines.all())
