"""Recovery priorities: the Product Manager's order of services by business value, with a reason each."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import transaction

from hadr_portal.core.audit import audit_record
from hadr_portal.core.dashboard_version import dashboard_invalidate
from hadr_portal.core.models import AuditEntry
from hadr_portal.core.permissions import Action, require
from hadr_portal.status.models import Service

from .models import RecoveryPriority

if TYPE_CHECKING:
    from hadr_portal.core.permissions import Actor


def priorities_list() -> list[RecoveryPriority]:
    """Every service with its priority; services nobody has placed yet come last (by tier), unsaved."""
    placed = list(RecoveryPriority.objects.select_related("service").order_by("position", "id"))
    known = {priority.service_id for priority in placed}
    rest = Service.objects.exclude(pk__in=known).order_by("tier", "name")
    return placed + [RecoveryPriority(service=service, position=0) for service in rest]


def priorities_save(
    *, order: list[str], reasons: dict[str, str], actor: Actor, address: str | None = None
) -> list[RecoveryPriority]:
    """Store the order (service names, first = recovered first) and the reasons; names not given keep their
    place after the given ones. Product Manager or DevOps."""
    require(actor, Action.EDIT_PRIORITIES)
    services = {service.name: service for service in Service.objects.all()}
    unknown = [name for name in order if name not in services]
    if unknown:
        raise ValueError(f"Unknown service: {', '.join(unknown)}")
    room = RecoveryPriority._meta.get_field("reason").max_length or 300
    for name, reason in reasons.items():
        if len(reason.strip()) > room:
            raise ValueError(f"The reason for {name} is {len(reason.strip())} characters long; at most {room}.")
    current = [priority.service.name for priority in priorities_list()]
    names = list(dict.fromkeys(order)) + [name for name in current if name not in order]
    with transaction.atomic():
        for position, name in enumerate(names, 1):
            defaults: dict[str, object] = {"position": position}
            if name in reasons:
                defaults["reason"] = reasons[name].strip()
            RecoveryPriority.objects.update_or_create(service=services[name], defaults=defaults)
        audit_record(
            actor=actor,
            action="priorities.save",
            outcome=AuditEntry.Outcome.SUCCESS,
            target="priorities",
            address=address,
            parameters={"order": names},
        )
        transaction.on_commit(dashboard_invalidate)
    return priorities_list()


def priority_move(*, name: str, by: int, actor: Actor, address: str | None = None) -> list[RecoveryPriority]:
    """Move one service up (by=-1) or down (by=1) the list."""
    names = [priority.service.name for priority in priorities_list()]
    if name not in names:
        raise ValueError(f"Unknown service: {name}")
    index = names.index(name)
    other = max(0, min(len(names) - 1, index + by))
    names[index], names[other] = names[other], names[index]
    return priorities_save(order=names, reasons={}, actor=actor, address=address)
