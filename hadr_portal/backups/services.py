"""Actions on backups: request one, pin / unpin, prune by retention, schedule backups and restore drills, drop the
database a restore replaced. Each permission-checked and audited. (Restores themselves: wizard.py.)"""

from __future__ import annotations

import logging
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from hadr_portal.adapters.pg.dbadmin import database_drop
from hadr_portal.adapters.pgbackrest import PgBackRestError
from hadr_portal.core.audit import audit_record
from hadr_portal.core.models import AuditEntry, Operation
from hadr_portal.core.operation_kinds import OperationError
from hadr_portal.core.operations import operation_request
from hadr_portal.core.permissions import Action, require
from hadr_portal.core.scheduling import schedule_due

from .archiving import archiving_broken_reason
from .backup import MANIFEST_SUFFIX
from .models import Backup, BackupPolicy, Restore
from .physical import ExpireRefused, set_expire, sets_sync
from .preflight import restore_server
from .retention import DRAFT_HOLDS, RetentionDecision, retention_plan
from .stanza import StanzaProblem
from .storage import storage_for
from .wizard import drill_request

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from hadr_portal.core.permissions import Actor


def backup_request(
    *,
    policy: BackupPolicy,
    actor: Actor | None,
    kind: str = Backup.Kind.MANUAL,
    set_type: str = "",
    address: str | None = None,
) -> Operation:
    """Queue a backup of the policy's database (one at a time per policy); a pgBackRest policy's whole cluster, as a
    `set_type` set (full, diff, incr; default: the policy's)."""
    if kind not in Backup.Kind.values:
        raise OperationError(f"Unknown kind of backup {kind!r}: one of {', '.join(Backup.Kind.values)}.")
    parameters = {"policy": policy.name, "kind": kind, "database": f"{policy.cluster.name}/{policy.dbname}"}
    if set_type:
        if not policy.is_physical:
            raise OperationError(f"{policy.name} takes logical backups: full, diff and incr are pgBackRest's types.")
        if set_type not in BackupPolicy.SetType.values:
            raise OperationError(f"Unknown backup type {set_type!r}: one of {', '.join(BackupPolicy.SetType.values)}.")
        parameters["set_type"] = set_type
    if policy.is_physical:
        parameters["database"] = f"{policy.cluster.name} (whole cluster)"
    # a physical set holds the cluster alone (no failover or rebuild under it); a dump shares it
    return operation_request(
        kind="backup",
        target=policy.target,
        scope=policy.cluster.target,
        scope_exclusive=policy.is_physical,
        actor=actor,
        address=address,
        parameters=parameters,
    )


def backup_pin(*, backup: Backup, pinned: bool, actor: Actor, address: str | None = None) -> Backup:
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
    actor: Actor | None = None,
    address: str | None = None,
) -> list[RetentionDecision]:
    """Delete what retention says (objects first, then the record), or only say what would go."""
    plan = [decision for decision in retention_plan(policy) if decision.delete]
    if dry_run or not plan:
        return plan
    if policy.is_physical:
        return _sets_prune(policy, plan, actor=actor, address=address)
    storage = storage_for(policy.storage)
    for decision in plan:
        backup = decision.backup
        storage.delete(backup.key)
        storage.delete(backup.key + MANIFEST_SUFFIX)
        Backup.objects.filter(pk=backup.pk, pinned=False).update(
            status=Backup.Status.DELETED, deleted_at=timezone.now()
        )
        _deletion_audit(policy, backup, actor, address, AuditEntry.Outcome.SUCCESS, decision.reason)
    return plan


def _deletion_audit(
    policy: BackupPolicy, backup: Backup, actor: Actor | None, address: str | None, outcome: str, detail: str
) -> None:
    audit_record(
        actor=actor,
        action="backup.delete",
        target=policy.target,
        outcome=outcome,
        address=address,
        parameters={"backup": backup.pk, "key": backup.key, "engine": backup.engine},
        detail=detail,
    )


def _sets_prune(
    policy: BackupPolicy, plan: list[RetentionDecision], *, actor: Actor | None, address: str | None
) -> list[RetentionDecision]:
    """pgBackRest sets go with `expire --set`, oldest first; a refusal (archiving broken, the newest full) stops
    the pruning and is audited, and nothing else is removed."""
    done = []
    for decision in sorted(plan, key=lambda item: item.backup.started_at):
        backup = decision.backup
        if not Backup.objects.filter(pk=backup.pk, status=Backup.Status.GOOD).exists():
            done.append(decision)  # it went with the full set it depended on
            continue
        try:
            set_expire(backup, archiving_broken=archiving_broken_reason)
        except (ExpireRefused, PgBackRestError) as exc:
            _deletion_audit(policy, backup, actor, address, AuditEntry.Outcome.REFUSED, str(exc))
            break
        _deletion_audit(policy, backup, actor, address, AuditEntry.Outcome.SUCCESS, decision.reason)
        done.append(decision)
    return done


def sets_sync_all() -> int:
    """Every pgBackRest policy's sets as `pgbackrest info` lists them; a policy whose stanza fails is logged."""
    changed = 0
    for policy in BackupPolicy.objects.filter(engine=BackupPolicy.Engine.PGBACKREST).select_related(
        "cluster", "storage", "copy_storage"
    ):
        try:
            changed += sum(sets_sync(policy))
        except (PgBackRestError, StanzaProblem) as exc:
            logger.warning("pgBackRest sets of %s not synchronised: %s", policy.name, exc)
    return changed


def backups_schedule_due(*, now: datetime | None = None) -> list[Operation]:
    """Queue the scheduled backups that are due, and set each policy's next run (called by beat)."""
    return schedule_due(
        BackupPolicy.objects.filter(enabled=True).select_related("cluster"),
        field="next_run_at",
        schedule=lambda policy: policy.schedule,
        start=lambda policy: backup_request(policy=policy, actor=None, kind=Backup.Kind.SCHEDULED),
        kind="backup",
        target=lambda policy: policy.target,
        now=now or timezone.now(),
    )


def drills_schedule_due(*, now: datetime | None = None) -> list[Operation]:
    """Queue the restore drills that are due by each policy's `drill_schedule` (called by beat)."""
    return schedule_due(
        BackupPolicy.objects.filter(enabled=True).select_related("cluster"),
        field="next_drill_at",
        schedule=lambda policy: policy.drill_schedule,
        start=lambda policy: drill_request(policy=policy, actor=None),
        kind="restore_drill",
        target=lambda policy: policy.drill_target,
        now=now or timezone.now(),
    )


def restore_drafts_prune(*, now: datetime | None = None) -> int:
    """Forget restores prepared in the wizard but never run (after a day: their pre-flight is long stale)."""
    cutoff = (now or timezone.now()) - DRAFT_HOLDS
    deleted, _ = Restore.objects.filter(status=Restore.Status.DRAFT, created_at__lt=cutoff).delete()
    return deleted


def restore_drop_kept(*, restore: Restore, actor: Actor, confirm: str, address: str | None = None) -> None:
    """Drop the database a restore replaced (kept, renamed, until now). The DBA types its name."""
    require(actor, Action.RESTORE)
    kept = restore.kept_database
    if not kept or restore.kept_dropped_at:
        raise OperationError("This restore kept no database that is still there.")
    if confirm.strip() != kept:
        raise OperationError(f"Type the kept database's name, {kept}, to drop it.")
    audit = partial(
        audit_record,
        actor=actor,
        action="restore.drop_kept",
        target=restore.operation_target,
        address=address,
        parameters={"restore": restore.pk, "database": kept},
        operation=restore.operation,
    )
    try:
        database_drop(restore_server(restore), kept)
    except Exception as exc:
        audit(outcome=AuditEntry.Outcome.FAILED, detail=str(exc))
        raise OperationError(f"Could not drop {kept}: {exc}") from exc
    Restore.objects.filter(pk=restore.pk).update(kept_dropped_at=timezone.now())
    audit(outcome=AuditEntry.Outcome.SUCCESS, detail=f"dropped {kept}")
