"""The restore and restore-drill operations (`ops` queue).

One path for both, in the one safe order:

1. pre-flight again (what can change between the wizard and now), then fetch the backup and check its size and
   SHA-256 while reading it: a corrupted or truncated backup is refused before anything is touched;
2. replace only: a safety backup of the current database (the backup operation's own code, kind "safety");
3. restore into a database the portal creates for it (`pg_restore -j`), or unpack a physical backup into a new
   data directory and start it on its own port;
4. verify: the policy's verification queries, and amcheck on the B-tree indexes;
5. replace only, once verified: the swap (the destructive step — cancellable until here, never after);
   a drill drops its scratch database (or stops and removes its scratch server).

A failure anywhere — the reaper's "worker lost" included — runs `restore_cleanup`: what the restore created and
did not swap in is dropped; production was never touched before the swap.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from django.utils import timezone

from hadr_portal.adapters.pg.connection import PgConninfo, with_database
from hadr_portal.adapters.pg.dbadmin import database_create, database_drop, database_info, databases_swap
from hadr_portal.adapters.pg.restore import (
    RestoreFailed,
    fetch_verified,
    pg_restore_items,
    pg_restore_run,
    verify_chunks,
)
from hadr_portal.adapters.pg.scratch import tar_extract
from hadr_portal.core.findings import OK, blockers
from hadr_portal.core.models import Operation, OperationLogLine
from hadr_portal.core.operation_kinds import OperationContext, OperationKind
from hadr_portal.core.permissions import Action
from hadr_portal.core.redaction import redact

from .backup import backup_take, cluster_conninfo, remove_objects
from .markers import drill_finish
from .models import Backup, BackupPolicy, Restore
from .pitr import pitr_cleanup, pitr_findings, pitr_run
from .preflight import restore_preflight, restore_server, scratch_directory
from .restore_verify import verify_restored
from .storage import storage_for

RESTORE_KIND, DRILL_KIND = "restore", "restore_drill"


class _Stage:
    """Progress of one stage, mapped into [low, high] of the bar and written at most once a second."""

    def __init__(self, context: OperationContext, low: int, high: int) -> None:
        self.context, self.low, self.high, self._last = context, low, high, 0.0

    def __call__(self, fraction: float, message: str) -> None:
        if time.monotonic() - self._last >= 1.0 or fraction >= 1:
            self._last = time.monotonic()
            self.context.progress(self.low + int((self.high - self.low) * min(1.0, fraction)), message)


def restore_run(context: OperationContext) -> Mapping[str, Any]:
    operation = context.operation
    restore = Restore.objects.select_related("policy__cluster", "policy__storage", "backup__storage").get(
        pk=context.parameters["restore"]
    )
    Restore.objects.filter(pk=restore.pk).update(
        operation=operation,
        status=Restore.Status.RUNNING,
        requested_at=operation.created_at,
        started_at=timezone.now(),
    )
    restore.refresh_from_db()
    context.progress(1, "Pre-flight")
    # a logical backup's checksum is checked below, while reading it; pgBackRest checks its own files
    findings = pitr_findings(restore) if restore.is_physical else restore_preflight(restore, reread=False)
    for finding in findings:
        if finding.level != OK:
            context.log(f"Pre-flight: {finding.title} {finding.detail}".strip(), level="warning")
    if refused := blockers(findings):
        raise RestoreFailed("Pre-flight refused the restore: " + " ".join(f.title for f in refused))
    context.log("Pre-flight passed.")
    if restore.is_physical:
        return _point_in_time(context, restore)
    scratch = scratch_directory(restore)
    try:
        path = _fetch(context, restore, scratch)
        context.checkpoint()
        return _logical(context, restore, path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _fetch(context: OperationContext, restore: Restore, scratch: Path) -> Path:
    """The backup as a local file (or unpacked directory), its size and SHA-256 checked against the record."""
    backup = restore.backup
    assert backup is not None  # pre-flight refuses a restore without one
    storage = storage_for(backup.storage)
    size, stage = backup.size or 0, _Stage(context, 2, 15)

    def on_progress(done: int) -> None:
        stage(done / max(1, size), f"Checking the backup: {done / 1e6:.0f} of {size / 1e6:.0f} MB read")

    path = storage.local_path(backup.key)
    if path is not None:
        context.log(f"Reading {path} in place, checking its size and SHA-256.")
        verify_chunks(storage.open_read(backup.key), sha256=backup.sha256, size=size, on_progress=on_progress)
    else:
        path = scratch / backup.key.rsplit("/", 1)[-1]
        context.log(f"Downloading {backup.key} from {storage.description}, checking its SHA-256 on the way.")
        fetch_verified(storage.open_read(backup.key), path, sha256=backup.sha256, size=size, on_progress=on_progress)
    context.log(f"The backup is intact: {size} bytes, SHA-256 {backup.sha256} as recorded.")
    if backup.engine == BackupPolicy.Engine.PG_DUMP_DIR:
        unpacked = scratch / "dump"
        tar_extract(path, unpacked, postgres_owner=False)
        return unpacked
    return path


def _logical(context: OperationContext, restore: Restore, path: Path) -> Mapping[str, Any]:
    policy, server = restore.policy, restore_server(restore)
    same_cluster = restore.destination_cluster_id in (None, policy.cluster_id)
    if restore.destination == Restore.Destination.REPLACE:
        _safety_backup(context, restore)
        context.checkpoint()
    work = restore.planned_work_database
    like = database_info(cluster_conninfo(policy.cluster, "postgres"), policy.dbname) if same_cluster else None
    database_create(server, work, like=like)
    Restore.objects.filter(pk=restore.pk).update(work_database=work, work_created=True)
    total = pg_restore_items(path)
    context.log(
        f"Created database {work} on {server.host}:{server.port}; pg_restore -j {policy.jobs} of {total} items."
    )
    stage = _Stage(context, 35, 80)
    pg_restore_run(
        path,
        with_database(server, work),
        jobs=policy.jobs,
        keep_owners=same_cluster,
        on_item=lambda done, what: stage(done / max(1, total), f"Restoring {done}/{total}: {what}"),
        checkpoint=context.checkpoint,
    )
    Restore.objects.filter(pk=restore.pk).update(restored_at=timezone.now())
    context.log(f"Restored into {work}.")
    verify_restored(context, restore, with_database(server, work))
    if restore.destination == Restore.Destination.REPLACE:
        _swap(context, restore, server, work)
    elif restore.kind == Restore.Kind.DRILL:
        database_drop(server, work)
        Restore.objects.filter(pk=restore.pk).update(work_created=False)
        context.log(f"Dropped the scratch database {work}.")
    return _finish(context, restore)


def _safety_backup(context: OperationContext, restore: Restore) -> None:
    policy = restore.policy
    backup = Backup.objects.create(
        policy=policy,
        kind=Backup.Kind.SAFETY,
        engine=policy.engine,
        storage=policy.storage,
        requested_by_id=context.operation.requested_by_id,
    )
    Restore.objects.filter(pk=restore.pk).update(safety_backup=backup)
    context.log(f"Taking a safety backup of {policy.cluster.name}/{policy.dbname} as it is now (backup #{backup.pk}).")
    try:
        backup_take(context, backup=backup, span=(15, 35))
    except BaseException as exc:
        _safety_backup_failed(backup, str(exc))
        raise
    context.log(f"Safety backup #{backup.pk} is good.")


def _safety_backup_failed(backup: Backup, error: str) -> None:
    remove_objects(backup)
    Backup.objects.filter(pk=backup.pk).exclude(status=Backup.Status.GOOD).update(
        status=Backup.Status.FAILED, finished_at=timezone.now(), error=error or "failed"
    )


def _swap(context: OperationContext, restore: Restore, server: PgConninfo, work: str) -> None:
    context.checkpoint()  # the last point where a cancellation is honoured
    current, kept = restore.destination_database, restore.planned_kept_database
    context.log(f"Swapping: {current} becomes {kept}, {work} becomes {current}. From here on it cannot be cancelled.")
    context.progress(94, "Swapping the restored database in")
    ended = databases_swap(server, current=current, replacement=work, keep_as=kept)
    Restore.objects.filter(pk=restore.pk).update(swapped_at=timezone.now(), kept_database=kept, work_created=False)
    context.log(
        f"Swapped: {current} is the restored database ({ended} session(s) ended). The old one is kept as {kept} "
        "until a DBA drops it."
    )


def _point_in_time(context: OperationContext, restore: Restore) -> Mapping[str, Any]:
    """pgBackRest to the chosen point, paused there; a drill checks its markers and removes it, a restore waits
    for the DBA's decision (copy back, replace, discard)."""
    result = dict(pitr_run(context, restore))
    restore.refresh_from_db()
    if restore.kind != Restore.Kind.RESTORE:
        drill_result = drill_finish(context, restore)
        pitr_cleanup(restore)
        context.log("Stopped and removed the scratch instance.")
        return {**result, **_finish(context, restore), **drill_result}
    restore.refresh_from_db()
    context.progress(100, "Ready: look, then copy back, replace or discard")
    context.log(
        f"The scratch instance waits at {restore.target_label}: psql -h 127.0.0.1 -p {restore.port} "
        f"-d {restore.policy.dbname} (read-only). It is removed at "
        f"{timezone.localtime(restore.scratch_expires_at):%Y-%m-%d %H:%M} unless you decide before."
    )
    return {**result, "restore": restore.pk, "rto_seconds": round(restore.rto_seconds or 0, 1)}


def _finish(context: OperationContext, restore: Restore) -> dict[str, Any]:
    """Verified: the measurements (RTO from the request, data-loss window from the incident)."""
    restore.refresh_from_db()
    backup = restore.backup
    assert backup is not None and restore.verified_at is not None
    done = restore.swapped_at or restore.verified_at
    requested = restore.requested_at or restore.created_at
    rto = (done - requested).total_seconds()
    loss = max(0.0, ((restore.incident_at or requested) - backup.started_at).total_seconds())
    Restore.objects.filter(pk=restore.pk).update(
        status=Restore.Status.VERIFIED, finished_at=timezone.now(), rto_seconds=rto, data_loss_seconds=loss
    )
    Backup.objects.filter(pk=backup.pk).update(verified_at=restore.verified_at)
    context.progress(100, "Verified")
    context.log(f"Verified {rto:.1f} s after the request (RTO); data-loss window {loss / 60:.0f} min (backup age).")
    return {
        "restore": restore.pk,
        "backup": backup.pk,
        "database": restore.destination_database or restore.policy.dbname,
        "rto_seconds": round(rto, 1),
        "data_loss_seconds": round(loss),
        "verification": restore.verification,
    }


def restore_cleanup(operation: Operation) -> None:
    """After a failure, a cancellation or a lost worker: drop what the restore created and did not swap in,
    mark a safety backup that did not finish failed, and record the outcome on the restore."""
    restore = Restore.objects.filter(pk=operation.parameters.get("restore")).select_related("policy", "backup").first()
    if restore is None:
        return
    try:
        if restore.is_physical and (restore.work_created or restore.session):
            pitr_cleanup(restore)
            _note(operation, f"Stopped and removed the scratch instance's data directory {restore.data_directory}.")
        elif restore.work_created and not restore.swapped_at:
            if restore.work_database and database_drop(restore_server(restore), restore.work_database):
                _note(operation, f"Dropped database {restore.work_database}: production was not touched.")
            Restore.objects.filter(pk=restore.pk).update(work_created=False)
    finally:
        shutil.rmtree(scratch_directory(restore), ignore_errors=True)
        if restore.safety_backup_id:
            safety = Backup.objects.get(pk=restore.safety_backup_id)
            if safety.status == Backup.Status.RUNNING:
                _safety_backup_failed(safety, operation.error)
        cancelled = operation.status == Operation.Status.CANCELLED
        Restore.objects.filter(pk=restore.pk).update(
            status=Restore.Status.CANCELLED if cancelled else Restore.Status.FAILED,
            finished_at=timezone.now(),
            error=operation.error,
        )


def _note(operation: Operation, message: str) -> None:
    OperationLogLine.objects.create(operation=operation, message=redact(message))


RESTORE = OperationKind(
    name=RESTORE_KIND,
    label="Restore",
    action=Action.RESTORE,
    run=restore_run,
    queue="ops",
    cancellable_while_running=True,
    cleanup=restore_cleanup,
)
DRILL = replace(RESTORE, name=DRILL_KIND, label="Restore drill")
