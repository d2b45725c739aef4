"""Changing the catalog: every change permission-checked and audited."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from hadr_portal.core.audit import audit_record
from hadr_portal.core.models import AuditEntry
from hadr_portal.core.permissions import Action, require

from .engine import service_refresh
from .models import Check, MaintenanceWindow, Service

if TYPE_CHECKING:
    from hadr_portal.core.permissions import Actor


def service_save(
    *,
    service: Service,
    actor: Actor,
    address: str | None,
    changed: list[str],
    priorities_only: bool = False,
) -> Service:
    """Create or update a service. DevOps edit everything; the Product Manager only priorities."""
    require(actor, Action.EDIT_PRIORITIES if priorities_only else Action.EDIT_CATALOG)
    created = service.pk is None
    with transaction.atomic():
        service.save()
        audit_record(
            actor=actor,
            action="catalog.service." + ("create" if created else "priorities" if priorities_only else "update"),
            target=service.target,
            outcome=AuditEntry.Outcome.SUCCESS,
            address=address,
            parameters={name: str(getattr(service, name)) for name in changed},
        )
    return service


def restart_setting_refuse(
    *,
    name: str,
    actor: Actor,
    address: str | None,
    reasons: list[str],
    attempted: str = "",
) -> None:
    """Record a refused attempt to write a command through the service form (a raw restart table, a program not
    in the command allowlist, a command or systemd controller): nothing was saved. `attempted`: what was sent."""
    audit_record(
        actor=actor,
        action="catalog.service.restart",
        target=f"service:{name[:64]}",
        outcome=AuditEntry.Outcome.REFUSED,
        address=address,
        parameters={"attempted": attempted[:2000]} if attempted else {},
        detail=" ".join(reasons),
    )


def check_save(*, check: Check, actor: Actor, address: str | None) -> Check:
    require(actor, Action.EDIT_CATALOG)
    created = check.pk is None
    with transaction.atomic():
        check.next_run_at = timezone.now()  # run the new settings at once
        check.save()
        audit_record(
            actor=actor,
            action=f"catalog.check.{'create' if created else 'update'}",
            target=f"{check.service.target}/{check.name}",
            outcome=AuditEntry.Outcome.SUCCESS,
            address=address,
            parameters={
                "kind": check.kind,
                "interval_seconds": check.interval_seconds,
                "enabled": check.enabled,
                **check.named_config(),
            },
        )
    service_refresh(check.service)
    return check


def check_delete(*, check: Check, actor: Actor, address: str | None) -> None:
    require(actor, Action.EDIT_CATALOG)
    service = check.service
    with transaction.atomic():
        audit_record(
            actor=actor,
            action="catalog.check.delete",
            target=f"{service.target}/{check.name}",
            outcome=AuditEntry.Outcome.SUCCESS,
            address=address,
        )
        check.delete()
    service_refresh(service)


def maintenance_open(*, window: MaintenanceWindow, actor: Actor, address: str | None) -> MaintenanceWindow:
    require(actor, Action.EDIT_CATALOG)
    with transaction.atomic():
        window.created_by = actor if actor.is_authenticated else None
        window.save()
        audit_record(
            actor=actor,
            action="catalog.maintenance.open",
            target=window.service.target,
            outcome=AuditEntry.Outcome.SUCCESS,
            address=address,
            parameters={"until": window.ends_at.isoformat(), "reason": window.reason},
        )
    return window
