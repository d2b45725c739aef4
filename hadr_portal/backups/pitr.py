"""Point-in-time recovery into a scratch instance: choose the point, check it, restore, pause there, decide.

The wizard's point step (`restore_point_in_time_set`) takes a time to the second in the portal's time zone (shown
also in UTC), a restore point, a transaction id, "latest" or "the end of the backup"; it refuses a point outside
the recoverable window, in the future, or a local time that a DST change makes ambiguous or impossible, saying
the window. The base backup is the newest good set that was consistent before the point.

The operation (`pitr_run`, inside the restore operation) runs `pgbackrest restore --type=… --target-action=pause`
into a new data directory, starts it on a free port on 127.0.0.1, waits until recovery pauses at the target, and
verifies it (the policy's read-only queries, amcheck). The instance then waits, read-only, for the DBA: copy tables
back (copyback.py), replace the cluster, or discard (scratch.py, with its query box and time to live).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone

from hadr_portal.adapters.commands import stop_session
from hadr_portal.adapters.pg.archive import recovery_state
from hadr_portal.adapters.pg.connection import with_database
from hadr_portal.adapters.pg.restore import RestoreFailed
from hadr_portal.adapters.pg.scratch import free_port, port_in_use, server_remove, server_start
from hadr_portal.adapters.pgbackrest import WAL_SEGMENT_BYTES, RecoveryTarget, wal_segments_between
from hadr_portal.adapters.pgbackrest import restore as pgbackrest_restore
from hadr_portal.core.findings import BLOCKER, OK, Finding
from hadr_portal.core.killpoints import kill_point
from hadr_portal.core.operation_kinds import OperationContext, OperationError
from hadr_portal.core.permissions import Action, require

from .archiving import ArchiveState
from .models import Backup, BackupPolicy, Restore, RestorePoint
from .preflight import DISK_MARGIN, conflict_finding, disk_finding, duration_estimate, existing_parent, restore_server
from .restore_verify import verify_restored
from .stanza import stanza_for

if TYPE_CHECKING:
    from hadr_portal.core.permissions import Actor

logger = logging.getLogger(__name__)

RECOVERY_WAIT_SECONDS = 6 * 3600
SCRATCH_WARNING = timedelta(hours=1)


# --- the window and the point --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    start: datetime  # the oldest good set's consistency point
    end: datetime  # the newest archived WAL (or now, while archiving is up to date)

    def text(self) -> str:
        start, end = timezone.localtime(self.start), timezone.localtime(self.end)
        return f"any second from {start:%d %b %Y %H:%M:%S} to {end:%d %b %Y %H:%M:%S} ({start:%Z})"


def recovery_window(policy: BackupPolicy, *, now: datetime | None = None) -> Window | None:
    """What PITR can reach now: from the oldest good set's consistency point to the newest archived WAL (the stored
    archive state; without one, now). None without a good set."""
    now = now or timezone.now()
    oldest = (
        policy.backups.filter(status=Backup.Status.GOOD, engine=BackupPolicy.Engine.PGBACKREST)
        .exclude(consistent_at=None)
        .order_by("consistent_at")
        .first()
    )
    if oldest is None or oldest.consistent_at is None:
        return None
    # the archive check's window ends at the newest archived WAL, or at a gap's start; while nothing is at risk
    # (archiving idle and up to date) it is now
    stored = ArchiveState.from_data(policy.archive_state)
    end = now
    if stored is not None and stored.window_end is not None and (stored.failing or stored.age_seconds):
        end = stored.window_end
    return Window(oldest.consistent_at, max(end, oldest.consistent_at))


def point_refusal(policy: BackupPolicy, moment: datetime, window: Window, now: datetime) -> str:
    """Why recovery cannot stop at `moment` — in the future, in a WAL gap, outside the window — or ""."""
    if moment > now:
        return f"{moment:%Y-%m-%d %H:%M:%S %Z} is in the future. The archive holds {window.text()}."
    if refusal := gap_refusal(policy, moment):
        return refusal
    if not window.start <= moment <= window.end:
        return f"{timezone.localtime(moment):%Y-%m-%d %H:%M:%S} is outside the window: {window.text()}."
    return ""


def gap_refusal(policy: BackupPolicy, moment: datetime) -> str:
    """Why `moment` cannot be recovered to because pgBackRest dropped WAL around it ("" when it can)."""
    stored = ArchiveState.from_data(policy.archive_state)
    for gap in stored.gaps if stored else ():
        if gap.start <= moment and (gap.end is None or moment < gap.end):
            until = f"{timezone.localtime(gap.end):%Y-%m-%d %H:%M:%S}" if gap.end else "the next full backup"
            return (
                f"PITR impossible between {timezone.localtime(gap.start):%Y-%m-%d %H:%M:%S} and {until}: pgBackRest "
                "dropped WAL of that time (archive-push-queue-max exceeded). Choose a point outside it."
            )
    return ""


def local_time_parse(text: str, zone: ZoneInfo | Any) -> datetime:
    """A local date-time to the second, in `zone`; ValueError (in words) when it is malformed, or when a DST change
    makes it ambiguous (it happened twice) or impossible (it never happened)."""
    text = text.strip().replace("T", " ")
    for pattern in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"):
        try:
            naive = datetime.strptime(text, pattern)
            break
        except ValueError:
            continue
    else:
        raise ValueError(f"{text!r} is not a date and time: write it as 2026-12-07 17:40:05.")
    first, second = naive.replace(tzinfo=zone), naive.replace(tzinfo=zone, fold=1)
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != naive:
        raise ValueError(f"{text} never happened in {zone} (clocks went forward): choose another time.")
    if first.utcoffset() != second.utcoffset():
        raise ValueError(
            f"{text} happened twice in {zone} (clocks went back): give it in UTC instead, "
            f"{first.astimezone(UTC):%H:%M:%S} or {second.astimezone(UTC):%H:%M:%S} UTC."
        )
    return first


def restore_point_in_time_set(
    *,
    restore: Restore,
    actor: Actor | None,
    target_type: str,
    when: str = "",
    utc: bool = False,
    value: str = "",
    label: str = "",
    now: datetime | None = None,
) -> list[str]:
    """Where recovery stops; the errors, in words (empty: saved, with the base backup and the scratch instance's
    data directory and port chosen). `actor=None` is the portal itself (the command line, a drill)."""
    if actor is not None:
        require(actor, Action.RESTORE)
    if restore.status != Restore.Status.DRAFT:
        raise OperationError(f"Restore #{restore.pk} is {restore.get_status_display().lower()}: it cannot change.")
    policy, now = restore.policy, now or timezone.now()
    window = recovery_window(policy, now=now)
    if window is None:
        return [f"{policy.name} has no good pgBackRest backup yet: there is no point to recover to."]
    moment: datetime | None = None
    errors: list[str] = []
    if target_type == Restore.TargetType.TIME:
        try:
            moment = local_time_parse(when, UTC if utc else timezone.get_current_timezone())
        except ValueError as exc:
            return [str(exc)]
        if refusal := point_refusal(policy, moment, window, now):
            errors.append(refusal)
        value = ""
    elif target_type == Restore.TargetType.NAME:
        point = RestorePoint.objects.filter(cluster_id=policy.cluster_id, name=value.strip()).first()
        if point is None:
            errors.append(f"{policy.cluster.name} has no restore point named {value.strip()!r}.")
        else:
            moment, value = point.created_at, point.name
            if moment < window.start:
                errors.append(f"Restore point {point.name} is older than the oldest backup: {window.text()}.")
    elif target_type == Restore.TargetType.XID:
        value = value.strip()
        if not value.isdigit() or int(value) < 3:
            errors.append("A transaction id is a number, e.g. 48213 (txid_current() gives it).")
    elif target_type in (Restore.TargetType.LATEST, Restore.TargetType.IMMEDIATE):
        value = ""
    else:
        errors.append("Choose the point to recover to.")
    if errors:
        return errors
    base = base_backup_for(policy, moment if target_type != Restore.TargetType.LATEST else None)
    if base is None:
        return [f"No good backup was consistent before that point: {window.text()}."]
    restore.target_type, restore.target_value, restore.target_time = target_type, value, moment
    restore.target_label = label or describe_target(target_type, moment, value)
    restore.backup, restore.destination = base, Restore.Destination.INSTANCE
    restore.destination_database = policy.dbname
    if not restore.data_directory:
        restore.data_directory = str(scratch_servers() / f"pitr-{restore.pk}")
    if not restore.port:
        restore.port = free_port()
    restore.save(
        update_fields=[
            "target_type",
            "target_value",
            "target_time",
            "target_label",
            "backup",
            "destination",
            "destination_database",
            "data_directory",
            "port",
        ]
    )
    return []


def describe_target(target_type: str, moment: datetime | None, value: str) -> str:
    if target_type == Restore.TargetType.TIME and moment:
        local = timezone.localtime(moment)
        if local.utcoffset() == timedelta(0):
            return f"{local:%Y-%m-%d %H:%M:%S} UTC"
        return f"{local:%Y-%m-%d %H:%M:%S %Z} ({moment.astimezone(UTC):%H:%M:%S} UTC)"
    if target_type == Restore.TargetType.NAME:
        return f"restore point {value}"
    if target_type == Restore.TargetType.XID:
        return f"transaction {value}"
    return str(Restore.TargetType(target_type).label)


def base_backup_for(policy: BackupPolicy, moment: datetime | None) -> Backup | None:
    """The newest good set consistent at or before `moment` (None: the newest of all), repository 1 first."""
    sets = policy.backups.filter(status=Backup.Status.GOOD, engine=BackupPolicy.Engine.PGBACKREST).exclude(
        consistent_at=None
    )
    if moment is not None:
        sets = sets.filter(consistent_at__lte=moment)
    return sets.order_by("repo", "-consistent_at", "-id").first()


def scratch_servers() -> Path:
    servers = Path(settings.RESTORE_SCRATCH_DIR) / "servers"
    servers.mkdir(parents=True, exist_ok=True)
    for path in (servers.parent, servers):
        path.chmod(0o711)  # the postgres user must reach the data directory
    return servers


def recovery_target(restore: Restore) -> RecoveryTarget:
    kind = restore.target_type or Restore.TargetType.IMMEDIATE
    if kind == Restore.TargetType.TIME:
        assert restore.target_time is not None
        return RecoveryTarget.at_time(restore.target_time)
    if kind in (Restore.TargetType.NAME, Restore.TargetType.XID):
        return RecoveryTarget(str(kind), restore.target_value)
    if kind == Restore.TargetType.LATEST:
        return RecoveryTarget("default")
    return RecoveryTarget("immediate")


def pitr_findings(restore: Restore) -> list[Finding]:
    """Pre-flight of a point-in-time restore: the base backup, the WAL to replay, disk, port, ETA, the window."""
    backup, policy = restore.backup, restore.policy
    findings: list[Finding] = []
    if backup is None:
        return [Finding(BLOCKER, "No point chosen.", "Go back to the Point step.")]
    now = timezone.now()
    window = recovery_window(policy, now=now)
    if restore.target_time and window and (refusal := point_refusal(policy, restore.target_time, window, now)):
        findings.append(Finding(BLOCKER, "The point cannot be recovered to any more.", refusal))
    findings.append(
        Finding(
            OK,
            f"Base backup: {backup.set_type} set {backup.key}",
            f"consistent at {timezone.localtime(backup.consistent_at):%Y-%m-%d %H:%M:%S}, "
            f"{(backup.database_size or 0) / 1e6:.0f} MB of data, repo{backup.repo}.",
        )
    )
    replay = _wal_to_replay(restore, backup)
    findings.append(Finding(OK, f"WAL to replay: about {replay / 1e6:.0f} MB", "from the set's end to the point."))
    need = int((backup.database_size or 0) * DISK_MARGIN) + replay
    directory = Path(restore.data_directory)
    findings.append(disk_finding(str(existing_parent(directory)), need, "the scratch instance's directory"))
    if directory.exists() and any(directory.iterdir()):
        findings.append(Finding(BLOCKER, f"{directory} exists and is not empty."))
    if not restore.port or port_in_use(restore.port):
        findings.append(Finding(BLOCKER, f"Port {restore.port} is in use: go back and choose the point again."))
    findings.append(conflict_finding(restore))
    findings.append(duration_estimate(backup))
    return findings


def _wal_to_replay(restore: Restore, backup: Backup) -> int:
    """Bytes of WAL from the set's last segment to the newest archived one (an upper bound for a time before now)."""
    newest = str((restore.policy.archive_state or {}).get("last_archived_wal") or backup.wal_stop)
    return wal_segments_between(backup.wal_stop, newest) * WAL_SEGMENT_BYTES


# --- the operation -------------------------------------------------------------------------------------------


def pitr_run(context: OperationContext, restore: Restore) -> Mapping[str, Any]:
    """Restore, start paused at the point, verify; the instance stays for the DBA (drills: the caller removes it)."""
    policy, backup = restore.policy, restore.backup
    assert backup is not None and restore.port
    stanza = stanza_for(policy)
    target = recovery_target(restore)
    directory = Path(restore.data_directory)
    Restore.objects.filter(pk=restore.pk).update(work_created=True)
    context.progress(5, f"pgBackRest restore of {backup.key} to {restore.target_label or target.type}")
    context.log(
        f"As {stanza.run_as}: "
        + stanza.command_line(
            "restore",
            f"--pg1-path={directory}",
            "--archive-mode=off",
            f"--set={backup.key}",
            f"--repo={backup.repo or 1}",
            *target.options(action="pause"),
        )
    )

    def on_start(session: int) -> None:
        Restore.objects.filter(pk=restore.pk).update(session=session)
        kill_point("restore.pgbackrest-started")

    label = backup.key if target.type != "default" else None
    pgbackrest_restore(
        stanza, directory=directory, target=target, repo=backup.repo or 1, label=label, on_start=on_start
    )
    Restore.objects.filter(pk=restore.pk).update(session=None)
    context.checkpoint()
    context.progress(45, f"Starting the scratch instance on 127.0.0.1:{restore.port}")
    log_file = server_start(directory, restore.port)
    kill_point("restore.instance-started")
    server = restore_server(restore)
    state = _wait_recovered(context, with_database(server, "postgres").conninfo(), target, log_file)
    Restore.objects.filter(pk=restore.pk).update(
        restored_at=timezone.now(), recovered_to=state.last_replay_time, recovered_lsn=state.replay_lsn
    )
    when = f"{timezone.localtime(state.last_replay_time):%Y-%m-%d %H:%M:%S}" if state.last_replay_time else "?"
    context.log(f"Recovery {state.pause_state} at {state.replay_lsn}; last transaction replayed committed at {when}.")
    if restore.kind == Restore.Kind.RESTORE:
        pitr_ready(restore)  # queryable now (the RTO stops here); copy back and replace wait for the verification
    restore.refresh_from_db()
    verify_restored(context, restore, with_database(server, policy.dbname))
    return {"server": f"127.0.0.1:{restore.port}", "data_directory": str(directory), "lsn": state.replay_lsn}


def _wait_recovered(context: OperationContext, conninfo: str, target: RecoveryTarget, log_file: Path) -> Any:
    """Until recovery pauses at the target (or, for "latest", ends); RestoreFailed with the server's own words when
    it stops before the target (the WAL to reach it is missing)."""
    deadline = time.monotonic() + RECOVERY_WAIT_SECONDS
    while True:
        context.checkpoint()
        try:
            state = recovery_state(conninfo)
        except Exception as exc:  # the server exited: say why, from its log
            tail = _log_tail(log_file)
            raise RestoreFailed(f"the scratch instance stopped during recovery: {tail or exc}") from None
        if state.pause_state == "paused" or not state.in_recovery:
            return state
        if time.monotonic() > deadline:
            raise RestoreFailed("recovery did not reach the point in time allowed")
        context.progress(60, "Replaying WAL up to the point")
        time.sleep(0.05)


def _log_tail(log_file: Path) -> str:
    try:
        lines = log_file.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    wanted = [line for line in lines if "FATAL" in line or "recovery ended before" in line]
    return (wanted or lines[-3:] or [""])[-1].strip()


def pitr_ready(restore: Restore) -> None:
    """The instance answers at the point: it waits for a decision until its time to live runs out."""
    now = timezone.now()
    requested = restore.requested_at or restore.created_at
    Restore.objects.filter(pk=restore.pk).update(
        status=Restore.Status.READY,
        scratch_expires_at=now + timedelta(hours=settings.SCRATCH_TTL_HOURS),
        rto_seconds=(now - requested).total_seconds(),
    )


def pitr_cleanup(restore: Restore) -> None:
    """After a failure or a lost worker: stop the pgbackrest restore if it still runs, remove the instance."""
    if restore.session and restore.session > 1:
        stop_session(restore.session)
    if restore.data_directory:
        server_remove(Path(restore.data_directory))
    Restore.objects.filter(pk=restore.pk).update(session=None, scratch_removed_at=timezone.now(), work_created=False)
