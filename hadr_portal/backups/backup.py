"""The backup operation: pre-checks, stream to storage, re-read and verify, manifest, mark good."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from django.utils import timezone

from hadr_portal.adapters.pg.backup import backup_stream, server_facts
from hadr_portal.adapters.pg.connection import BackupFailed, PgConninfo, TransientBackupError
from hadr_portal.adapters.pgbackrest import TransientPgBackRestError
from hadr_portal.adapters.storage import TransientStorageError
from hadr_portal.core.models import Operation
from hadr_portal.core.operation_kinds import OperationContext, OperationKind
from hadr_portal.core.permissions import Action
from hadr_portal.databases.models import Cluster, Purpose
from hadr_portal.databases.topology import cluster_primary_or_first

from .models import Backup, BackupPolicy
from .physical import physical_backup_cleanup, physical_backup_take
from .storage import storage_for

EXTENSIONS = {"pg_dump": "dump", "pg_dump_dir": "dir.tar"}
MANIFEST_SUFFIX = ".manifest.json"


def policy_conninfo(policy: BackupPolicy) -> PgConninfo:
    """The node to back up, as the backup role: the cluster's current primary as its checks last saw it."""
    return cluster_conninfo(policy.cluster, policy.dbname, purpose=Purpose.BACKUP)


def cluster_conninfo(cluster: Cluster, dbname: str, *, purpose: Purpose = Purpose.ADMIN) -> PgConninfo:
    """A database on the cluster's current primary (the node applications should use), as `purpose`'s role."""
    primary = cluster_primary_or_first(cluster)
    if primary is None:
        raise BackupFailed(f"Cluster {cluster.name} has no nodes in the catalog.")
    address = primary.address(purpose)
    return PgConninfo(host=address.host, port=address.port, user=address.user, password=address.password, dbname=dbname)


def backup_run(context: OperationContext) -> Mapping[str, Any]:
    operation = context.operation
    policy = BackupPolicy.objects.select_related("cluster", "storage").get(name=context.parameters["policy"])
    backup, _ = Backup.objects.get_or_create(
        operation=operation,
        defaults={
            "policy": policy,
            "kind": context.parameters.get("kind", Backup.Kind.MANUAL),
            "engine": policy.engine,
            "storage": policy.storage,
            "requested_by_id": operation.requested_by_id,
            "set_type": context.parameters.get("set_type", "") if policy.is_physical else "",
        },
    )
    if policy.is_physical:
        if context.attempt > 1:
            physical_backup_cleanup(backup)  # a retried attempt: the pgbackrest of the last one must be gone
        physical_backup_take(context, backup=backup)
    else:
        if context.attempt > 1:
            remove_objects(backup)  # a retried attempt starts clean
        backup_take(context, backup=backup)
    backup.refresh_from_db()
    return {"backup": backup.pk, "key": backup.key, "size": backup.size, "sha256": backup.sha256}


def backup_take(context: OperationContext, *, backup: Backup, span: tuple[int, int] = (0, 100)) -> None:
    """Take `backup` (a running record of its policy) inside an operation: pre-checks, stream, re-read and
    compare, manifest, then mark it good. A restore takes its safety backup through here too, its progress
    mapped into `span` of its own bar."""
    policy = backup.policy
    storage = storage_for(policy.storage)
    conninfo = policy_conninfo(policy)

    def progress(percent: int, message: str) -> None:
        context.progress(span[0] + (span[1] - span[0]) * percent // 100, message)

    progress(2, "Pre-checks")
    storage.check()
    facts = server_facts(conninfo)
    context.log(
        f"{conninfo.host}:{conninfo.port}/{policy.dbname}: PostgreSQL {facts.server_version}, "
        f"{_mb(facts.database_size)} MB, LSN {facts.lsn}; storage {storage.description}"
    )
    started = timezone.now()
    key = f"{policy.name}/{started:%Y%m%dT%H%M%SZ}-{backup.kind}-{backup.pk}.{EXTENSIONS[policy.engine]}"
    Backup.objects.filter(pk=backup.pk).update(
        key=key,
        started_at=started,
        server_version=facts.server_version,
        database_size=facts.database_size,
        lsn=facts.lsn,
    )
    expected = max(facts.database_size or 1, 1)

    def on_progress(done: int) -> None:
        progress(5 + min(80, int(done / expected * 80)), f"{_mb(done)} MB written")

    context.log(f"Streaming {policy.get_engine_display()} to {key}")
    jobs = policy.jobs if policy.engine == BackupPolicy.Engine.PG_DUMP_DIR else 1
    with backup_stream(conninfo, engine=policy.engine, compress=policy.compress or None, jobs=jobs) as stream:
        stored = storage.put_stream(key, stream, on_progress=on_progress)
    context.log(f"Stored {_mb(stored.size)} MB, SHA-256 {stored.sha256}")

    progress(88, "Verifying the stored object")
    reread = storage.sha256(key)
    if reread.size != stored.size or reread.sha256 != stored.sha256:
        raise RuntimeError(
            f"verification failed: stored {reread.size} B / {reread.sha256}, written {stored.size} B / {stored.sha256}"
        )
    context.log("Verified: the stored object's size and SHA-256 match what was written.")
    finished = timezone.now()
    manifest = {
        "format": "hadr-portal-backup/1",
        "policy": policy.name,
        "cluster": policy.cluster.name,
        "database": policy.dbname,
        "host": f"{conninfo.host}:{conninfo.port}",
        "engine": policy.engine,
        "options": {"compress": policy.compress or "default", "jobs": jobs},
        "kind": backup.kind,
        "server_version": facts.server_version,
        "database_size": facts.database_size,
        "lsn": facts.lsn,
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat(),
        "key": key,
        "size": stored.size,
        "sha256": stored.sha256,
        "restore": _restore_hint(policy.engine, key),
    }
    storage.put_bytes(key + MANIFEST_SUFFIX, json.dumps(manifest, indent=2).encode())
    Backup.objects.filter(pk=backup.pk).update(
        status=Backup.Status.GOOD, size=stored.size, sha256=stored.sha256, finished_at=finished, manifest=manifest
    )
    progress(100, "Good")


def _restore_hint(engine: str, key: str) -> str:
    name = key.rsplit("/", 1)[-1]
    if engine == "pg_dump":
        return f"sha256sum {name}; pg_restore --list {name}; createdb NEW && pg_restore -d NEW -j 2 {name}"
    return f"sha256sum {name}; mkdir dump && tar -xf {name} -C dump; pg_restore -d NEW -j 2 dump"


def _mb(size: int | None) -> str:
    return "?" if size is None else f"{size / 1e6:.1f}"


def remove_objects(backup: Backup) -> None:
    if backup.key and not backup.is_physical:
        storage = storage_for(backup.storage)
        storage.delete(backup.key)
        storage.delete(backup.key + MANIFEST_SUFFIX)


def backup_cleanup(operation: Operation) -> None:
    """A failed or killed backup leaves no object that could be taken for a good one."""
    for backup in Backup.objects.filter(operation=operation).exclude(status=Backup.Status.GOOD):
        if backup.is_physical:
            physical_backup_cleanup(backup)
        else:
            remove_objects(backup)
        Backup.objects.filter(pk=backup.pk).update(
            status=Backup.Status.FAILED, finished_at=timezone.now(), error=operation.error or "failed"
        )


BACKUP = OperationKind(
    name="backup",
    label="Backup",
    action=Action.RUN_BACKUP,
    run=backup_run,
    queue="ops",
    transient_errors=(TransientBackupError, TransientStorageError, TransientPgBackRestError),
    max_attempts=3,
    backoff_initial=2.0,
    backoff_max=30.0,
    cleanup=backup_cleanup,
)
