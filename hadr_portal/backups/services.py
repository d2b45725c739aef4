"""Actions on backups: request one, pin / unpin, prune by retention. Each permission-checked and audited."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from hadr_portal.core.audit import audit_record
from hadr_portal.core.models import AuditEntry, Operation
from hadr_portal.core.operations import OperationError, operation_request
from hadr_portal.core.permissions import Action, require

from .models import Backup, BackupPolicy
from .operations import MANIFEST_SUFFIX
from .retention import RetentionDecision, retention_plan
from .storage import storage_for

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser


def backup_request(
    *,
    policy: BackupPolicy,
    actor: AbstractBaseUser | AnonymousUser | None,
    kind: str = Backup.Kind.MANUAL,
    address: str | None = None,
) -> Operation:
    """Queue a backup of the policy's database (one at a time per policy)."""
    if kind not in Backup.Kind.values:
        raise OperationError(f"Unknown kind of backup {kind!r}: one of {', '.join(Backup.Kind.values)}.")
    return operation_request(
        kind="backup",
        target=policy.target,
        actor=actor,
        address=address,
        parameters={"policy": policy.name, "kind": kind, "database": f"{policy.cluster.name}/{policy.dbname}"},
    )


def backup_pin(
    *, backup: Backup, pinned: bool, actor: AbstractBaseUser | AnonymousUser, address: str | None = None
) -> Backup:
    """Pinned backups are kept until unpinned, whatever the retention says."""
    require(actor, Action.PIN_BACKUP)
    if backup.status != Backup.Status.GOOD:
        raise OperationError(f"Only good backups can be pinned; this one is {backup.status}.")
    with transaction.atomic():
        Backup.objects.filter(pk=backup.pk).update(pinned=pinned)
        audit_record(
            actor=actor,
            action="backup.pin" if pinned else "backup.unpin",
            target=backup.policy.target,
            outcome=AuditEntry.Outcome.SUCCESS,
            address=address,
            parameters={"backup": backup.pk, "key": backup.key},
        )
    backup.refresh_from_db()
    return backup


def backups_prune(
    *,
    policy: BackupPolicy,
    dry_run: bool,
    actor: AbstractBaseUser | AnonymousUser | None = None,
    address: str | None = None,
) -> list[RetentionDecision]:
    """Delete what retention says (objects first, then the record), or only say what would go."""
    plan = [decision for decision in retention_plan(policy) if decision.delete]
    if dry_run or not plan:
        return plan
    storage = storage_for(policy.storage)
    for decision in plan:
        backup = decision.backup
        storage.delete(backup.key)
        storage.delete(backup.key + MANIFEST_SUFFIX)
        Backup.objects.filter(pk=backup.pk, pinned=False).update(
            status=Backup.Status.DELETED, deleted_at=timezone.now()
        )
        audit_record(
            actor=actor,
            action="backup.delete",
            target=policy.target,
            outcome=AuditEntry.Outcome.SUCCESS,
            address=address,
            parameters={"backup": backup.pk, "key": backup.key},
            detail=decision.reason,
        )
    return plan


def backups_schedule_due(*, now=None) -> list[Operation]:  # type: ignore[no-untyped-def]
    """Queue the scheduled backups that are due, and set each policy's next run (called by beat)."""
    now = now or timezone.now()
    queued = []
    for policy in BackupPolicy.objects.filter(enabled=True).select_related("cluster"):
        if policy.next_run_at is None:
            BackupPolicy.objects.filter(pk=policy.pk).update(next_run_at=policy.next_after(now))
            continue
        if policy.next_run_at > now:
            continue
        # Advance first, so a failure to queue (another backup running) does not retry every minute.
        if not BackupPolicy.objects.filter(pk=policy.pk, next_run_at=policy.next_run_at).update(
            next_run_at=policy.next_after(now)
        ):
            continue  # another beat tick took it
        try:
            queued.append(backup_request(policy=policy, actor=None, kind=Backup.Kind.SCHEDULED))
        except OperationError as exc:
            audit_record(
                actor=None,
                action="operation.backup",
                target=policy.target,
                outcome=AuditEntry.Outcome.REFUSED,
                detail=f"scheduled backup skipped: {exc}",
            )
    return queued
