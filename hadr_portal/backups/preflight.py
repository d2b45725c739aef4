"""Pre-flight of a restore: everything that can be known before anything is touched.

`restore_preflight()` is what the wizard shows (and stores on the restore) before the Run step, and what the
operation runs again before it starts. Each finding is ok, a warning, or a blocker; one blocker and the restore
does not run. With `reread`, the stored backup is read back whole and its SHA-256 compared with the recorded one
(the operation does the same while it fetches the backup, so it never restores bytes it has not checked).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import statistics
import time
from dataclasses import replace
from pathlib import Path

from django.conf import settings

from hadr_portal.adapters.pg.backup import server_facts
from hadr_portal.adapters.pg.connection import BackupFailed, PgConninfo
from hadr_portal.adapters.pg.dbadmin import database_info, database_sessions, server_data_directory
from hadr_portal.adapters.pg.restore import RestoreFailed, local_tools_major, major_version, verify_chunks
from hadr_portal.adapters.probes import format_bytes
from hadr_portal.adapters.storage import StorageError
from hadr_portal.core.findings import BLOCKER, OK, WARNING, Finding
from hadr_portal.core.humanize import duration_text
from hadr_portal.core.models import Operation
from hadr_portal.databases.models import Cluster

from .backup import cluster_conninfo
from .models import Backup, Restore
from .storage import storage_for

DATABASE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,62}$")
RESERVED_DATABASES = {"postgres", "template0", "template1"}
DISK_MARGIN = 1.2  # indexes rebuilt, WAL written while restoring: more than the database's size
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def restore_cluster(restore: Restore) -> Cluster:
    """The cluster whose roles the restored data has: the policy's for a physical restore (a copy of that cluster,
    its users and passwords included), else the destination cluster."""
    return restore.policy.cluster if restore.is_physical else (restore.destination_cluster or restore.policy.cluster)


def restore_server(restore: Restore) -> PgConninfo:
    """The server the restore writes to, connected to its `postgres` database."""
    conninfo = cluster_conninfo(restore_cluster(restore), "postgres")
    return replace(conninfo, host="127.0.0.1", port=restore.port or 0) if restore.is_physical else conninfo


def scratch_directory(restore: Restore) -> Path:
    """Downloads and unpacked dumps of this restore (removed when it ends)."""
    return Path(settings.RESTORE_SCRATCH_DIR) / f"restore-{restore.pk}"


def restore_preflight(restore: Restore, *, reread: bool = True) -> list[Finding]:
    """Every check, in the order the wizard lists them."""
    backup = restore.backup
    if backup is None:
        return [Finding(BLOCKER, "No backup chosen.", "Go back to the Backup step.")]
    findings = _backup_findings(backup, reread=reread)
    findings += _logical_findings(restore, backup)
    findings.append(conflict_finding(restore))
    findings.append(duration_estimate(backup))
    return findings


def _backup_findings(backup: Backup, *, reread: bool) -> list[Finding]:
    if backup.status != Backup.Status.GOOD:
        return [Finding(BLOCKER, f"Backup #{backup.pk} is {backup.get_status_display().lower()}, not good.")]
    storage = storage_for(backup.storage)
    try:
        stored = storage.stat(backup.key)
    except StorageError as exc:
        return [Finding(BLOCKER, "The backup's storage cannot be read.", str(exc))]
    if stored is None:
        return [Finding(BLOCKER, f"The backup object {backup.key} is missing from {storage.description}.")]
    if stored.size != backup.size:
        return [
            Finding(
                BLOCKER,
                "The stored backup is truncated or replaced: choose another backup.",
                f"{stored.size} bytes stored, {backup.size} backed up.",
            )
        ]
    if not reread:
        return [Finding(OK, "The stored backup has the recorded size.", "Its SHA-256 is checked while it is read.")]
    started = time.monotonic()
    try:
        verify_chunks(storage.open_read(backup.key), sha256=backup.sha256, size=backup.size or 0)
    except RestoreFailed as exc:
        return [Finding(BLOCKER, "Checksum mismatch: the stored backup is corrupted. Choose another backup.", str(exc))]
    except StorageError as exc:
        return [Finding(BLOCKER, "The stored backup cannot be read back.", str(exc))]
    took = time.monotonic() - started
    return [
        Finding(
            OK,
            "Checksum re-read and compared: the stored backup is intact.",
            f"SHA-256 {backup.sha256[:16]}…, {format_bytes(backup.size or 0)} read in {took:.1f} s.",
        )
    ]


def _version_findings(server_version: str, backup: Backup, *, exact: bool) -> list[Finding]:
    server, source, tools = major_version(server_version), major_version(backup.server_version), local_tools_major()
    findings = []
    if source is None:
        findings.append(Finding(WARNING, "The backup does not say which PostgreSQL version made it."))
    elif server is not None and (server != source if exact else server < source):
        rule = "the same major version" if exact else "the same or a newer version"
        findings.append(
            Finding(
                BLOCKER,
                f"Server version {server} is older than the backup's ({source})."
                if server < source
                else f"Server version {server} cannot start a physical backup of version {source}.",
                f"A backup restores onto {rule}.",
            )
        )
    else:
        findings.append(Finding(OK, f"Server version compatible: PostgreSQL {server_version}, backup from {source}."))
    if source is not None and tools is not None and tools < source:
        findings.append(Finding(BLOCKER, f"This machine's PostgreSQL programs ({tools}) are older than the backup's."))
    return findings


def _logical_findings(restore: Restore, backup: Backup) -> list[Finding]:
    findings: list[Finding] = []
    name = restore.destination_database
    if not name:
        return [Finding(BLOCKER, "No destination database chosen.", "Go back to the Destination step.")]
    replacing = restore.destination == Restore.Destination.REPLACE
    if not DATABASE_NAME.match(name) or (name in RESERVED_DATABASES and not replacing):
        findings.append(Finding(BLOCKER, f"{name!r} cannot be the name of the restored database."))
    try:
        server = restore_server(restore)
        facts = server_facts(server, timeout=5)
    except BackupFailed as exc:
        return [*findings, Finding(BLOCKER, "The destination server is not reachable.", str(exc))]
    findings.append(Finding(OK, f"Destination server {server.host}:{server.port} is reachable."))
    findings += _version_findings(facts.server_version, backup, exact=False)
    if facts.in_recovery:
        findings.append(Finding(BLOCKER, f"{server.host}:{server.port} is a replica: it cannot take a restore."))
        return findings
    existing = database_info(server, name)
    if replacing:
        findings += _replace_findings(restore, server, existing)
    elif restore.destination == Restore.Destination.SCRATCH:
        findings.append(Finding(OK, f"A scratch database {restore.planned_work_database} is created, then dropped."))
    elif existing is not None:
        findings.append(
            Finding(
                BLOCKER,
                f"Database {name} already exists on {server.host}:{server.port}.",
                "Choose another name, or Replace the production database.",
            )
        )
    else:
        findings.append(Finding(OK, f"Database {name} does not exist yet: it will be created."))
    work = restore.planned_work_database
    if work != name and database_info(server, work) is not None:
        findings.append(Finding(BLOCKER, f"Database {work} (the working copy's name) already exists."))
    need = int((backup.database_size or backup.size or 0) * DISK_MARGIN)
    findings.append(disk_finding(_data_directory_if_local(server), need, "the destination server's data directory"))
    if storage_for(backup.storage).local_path(backup.key) is None:
        findings.append(disk_finding(str(settings.RESTORE_SCRATCH_DIR), backup.size or 0, "the download directory"))
    return findings


def _replace_findings(restore: Restore, server: PgConninfo, existing: object) -> list[Finding]:
    name = restore.destination_database
    if existing is None:
        return [Finding(BLOCKER, f"Database {name} does not exist on {server.host}:{server.port}: nothing to replace.")]
    findings = [
        Finding(
            OK,
            f"A safety backup of {name} is taken first; the restore goes into a new database, swapped in only after "
            "it verifies.",
            f"The current {name} is kept as {restore.planned_kept_database} until you drop it.",
        )
    ]
    if database_info(server, restore.planned_kept_database) is not None:
        findings.append(Finding(BLOCKER, f"Database {restore.planned_kept_database} already exists."))
    sessions = database_sessions(server, name)
    if sessions:
        listed = "; ".join(
            f"{s.user}@{s.client} {s.application or '(no application name)'} {s.state}" for s in sessions
        )
        findings.append(
            Finding(WARNING, f"{len(sessions)} session(s) on {name} will be ended at the swap.", listed[:1000])
        )
    else:
        findings.append(Finding(OK, f"No session is connected to {name} now."))
    return findings


def existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _data_directory_if_local(server: PgConninfo) -> str | None:
    if server.host not in LOCAL_HOSTS:
        return None
    directory = server_data_directory(server)
    return directory if directory and os.path.isdir(directory) else None


def disk_finding(path: str | None, need: int, what: str) -> Finding:
    if path is None:
        return Finding(
            WARNING,
            f"Free disk on {what} cannot be measured from here.",
            f"Make sure it has at least {format_bytes(need)} free.",
        )
    free = shutil.disk_usage(path).free
    level = OK if free >= need else BLOCKER
    verdict = "enough" if level == OK else "not enough"
    return Finding(level, f"Free disk on {what}: {format_bytes(free)}, {verdict} for ≈ {format_bytes(need)}.", path)


def conflict_finding(restore: Restore) -> Finding:
    target = restore.operation_target
    busy = Operation.objects.filter(target=target, status__in=Operation.ACTIVE).exclude(restore=restore).first()
    if busy is not None:
        return Finding(
            BLOCKER, f"Another operation on {target} is in progress (#{busy.pk}, {busy.kind_label}).", "Wait for it."
        )
    return Finding(OK, "No other restore on that target.")


DURATION_SOURCES = (Restore.Status.VERIFIED, Restore.Status.READY, Restore.Status.DONE)


def duration_estimate(backup: Backup) -> Finding:
    """From past verified restores and drills of backups of the same engine, the nearest in size."""
    past = [  # (the backup's size, how long its restore took)
        (restore.backup.size, restore.duration_seconds)
        # verified restores and drills; a point-in-time restore counts once it is ready (verified while it waits)
        for restore in Restore.objects.filter(status__in=DURATION_SOURCES, backup__engine=backup.engine)
        .exclude(backup__size=None)
        .select_related("backup")
        .order_by("-finished_at")[:100]
        if restore.duration_seconds and restore.backup and restore.backup.size
    ]
    size = backup.size
    if not past or not size:
        return Finding(OK, "No past restore of this kind to estimate the duration from.")
    nearest = sorted(past, key=lambda restored: abs(math.log(restored[0] / size)))[:5]
    rate = statistics.median(took / restored_size for restored_size, took in nearest)
    seconds = max(1.0, rate * size)
    return Finding(
        OK,
        f"Estimated duration ≈ {duration_text(seconds)}.",
        f"From {len(nearest)} past restore(s) of {backup.get_engine_display()} backups of similar size.",
    )
