"""Queries the core pages need."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from django.db.models import Q, QuerySet
from django.utils import timezone

from . import registry
from .models import AuditEntry, Operation
from .operations import output_visible
from .permissions import user_can

if TYPE_CHECKING:
    from .permissions import Actor

# Audit parameters only administrators see: the name typed at a failed sign-in may be a password typed in the
# wrong field, or tell an attacker which accounts exist.
ATTEMPTED_USERNAME = "attempted_username"
ADMIN_ONLY_PARAMETERS = frozenset({ATTEMPTED_USERNAME})


def _day_start(value: str) -> datetime | None:
    try:
        day = datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        return None
    return timezone.make_aware(datetime.combine(day, time.min))


def audit_entries(filters: dict[str, Any], *, administrator: bool = False) -> tuple[QuerySet[AuditEntry], list[str]]:
    """Audit entries matching the page's filters, and the filter errors for the operator. The target filter also
    finds the names typed at failed sign-ins for administrators, and never for anyone else."""
    entries = AuditEntry.objects.all()
    errors: list[str] = []
    if actor := filters.get("actor"):
        entries = entries.filter(actor_name__icontains=actor)
    if action := filters.get("action"):
        entries = entries.filter(action__icontains=action)
    if target := filters.get("target"):
        if administrator:
            entries = entries.filter(Q(target__icontains=target) | Q(parameters__attempted_username__icontains=target))
        else:
            entries = entries.filter(target__icontains=target).exclude(_LEGACY_FAILED_SIGN_IN)
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
            elif name == "since":
                entries = entries.filter(**{lookup: start})
            elif start.date() < date.max:  # until the last day of the calendar: nothing to leave out
                entries = entries.filter(**{lookup: start + timedelta(days=1)})
    return entries, errors


# Failed sign-ins recorded before the typed name moved to `attempted_username` hold it in their target.
_LEGACY_FAILED_SIGN_IN = Q(action="auth.sign_in", outcome=AuditEntry.Outcome.REFUSED, target__startswith="user:")


def audit_entries_shown(entries: Iterable[AuditEntry], *, administrator: bool) -> None:
    """Give each entry what this reader may see of it: `shown_target`, `shown_parameters`, and `name_hidden` when
    an attempted user name was left out (a failed sign-in, for anyone but an administrator)."""
    # These attributes are for the template only: the model does not declare them (hence the ignores).
    for entry in entries:
        parameters = entry.parameters if isinstance(entry.parameters, dict) else {}
        entry.shown_target, entry.shown_parameters, entry.name_hidden = entry.target, parameters, False  # type: ignore[attr-defined]
        if administrator:
            continue
        failed_sign_in = entry.action == "auth.sign_in" and entry.outcome == AuditEntry.Outcome.REFUSED
        if failed_sign_in and entry.target.startswith("user:"):
            entry.shown_target, entry.name_hidden = "sign-in", True  # type: ignore[attr-defined]
        if ADMIN_ONLY_PARAMETERS & parameters.keys():
            entry.shown_parameters = {k: v for k, v in parameters.items() if k not in ADMIN_ONLY_PARAMETERS}  # type: ignore[attr-defined]
            entry.name_hidden = True  # type: ignore[attr-defined]


def operations_list(filters: dict[str, Any], *, user: Actor | None = None) -> QuerySet[Operation]:
    operations = Operation.objects.select_related("requested_by")
    if status := filters.get("status"):
        operations = (
            operations.filter(status=status) if status != "active" else operations.filter(status__in=Operation.ACTIVE)
        )
    if kind := filters.get("kind"):
        operations = operations.filter(kind=kind)
    if q := filters.get("q"):
        # errors are searched only where the reader may read them (core.operations.output_visible)
        readable = [kind.name for kind in registry.operation_kinds if user is None or user_can(user, kind.action)]
        operations = operations.filter(Q(target__icontains=q) | Q(error__icontains=q, kind__in=readable))
    return operations


def operation_with_log(operation_id: int, *, user: Actor) -> tuple[Operation, list[Any] | None]:
    """The operation, and its log lines when `user` may read them (None otherwise)."""
    operation = Operation.objects.select_related("requested_by").get(pk=operation_id)
    return operation, list(operation.log_lines.all()) if output_visible(user, operation) else None
