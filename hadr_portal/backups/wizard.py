"""The restore wizard's steps on a draft restore: situation, backup, destination, pre-flight — then `restore_request`.

A draft is a `Restore` in status "draft" that only the DBA's choices change; nothing touches a server until
the Run step queues the operation. Each `restore_*_set` validates one step and returns what is wrong with it,
in the operator's words (empty: saved). Changing a choice discards the pre-flight: it must run again.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from hadr_portal.adapters.pg.scratch import free_port
from hadr_portal.core import registry
from hadr_portal.core.findings import Finding, blockers, findings_from
from hadr_portal.core.models import Operation
from hadr_portal.core.operation_kinds import OperationError
from hadr_portal.core.operations import operation_request
from hadr_portal.core.permissions import Action, require
from hadr_portal.databases.models import Cluster

from .markers import drill_point_choose
from .models import Backup, BackupPolicy, Restore, RestorePoint
from .pitr import base_backup_for, pitr_findings, recovery_window, scratch_servers
from .preflight import DATABASE_NAME, RESERVED_DATABASES, restore_cluster, restore_preflight
from .restores import DRILL_KIND, RESTORE_KIND
from .selectors import suggested_backup

if TYPE_CHECKING:
    from hadr_portal.core.permissions import Actor

STEPS = (
    ("situation", "Situation"),
    ("backup", "Backup"),
    ("destination", "Destination"),
    ("preflight", "Pre-flight"),
    ("run", "Run"),
    ("verify", "Verify"),
    ("summary", "Summary"),
)
RUNBOOKS: dict[str, str] = {
    Restore.Situation.CORRUPTION: "data-corruption",
    Restore.Situation.LOST_SERVER: "restore-by-hand",
    Restore.Situation.VERIFICATION: "data-corruption",
}
PREFLIGHT_VALID = timedelta(minutes=15)
EDIT_STEPS = ("situation", "backup", "destination", "preflight")


def wizard_steps(restore: Restore, current: str) -> list[dict[str, object]]:
    """The stepper: each step done, current or to do, and whether it can be opened (a draft's steps, back to
    any of them, forward as far as the choices made so far allow)."""
    keys = [key for key, _ in STEPS]
    chosen = [True, bool(restore.situation), bool(restore.situation and restore.backup_id)]
    chosen.append(chosen[-1] and bool(restore.destination and (restore.destination_database or restore.port)))
    rows = []
    for position, (key, label) in enumerate(STEPS):
        if key == "backup" and restore.is_physical:
            label = "Point in time"  # pgBackRest: the point chosen, the base backup follows from it
        if key == "verify" and restore.is_physical and restore.kind == Restore.Kind.RESTORE:
            label = "Look and decide"
        state = "current" if key == current else ("done" if position < keys.index(current) else "todo")
        openable = restore.status == Restore.Status.DRAFT and key in EDIT_STEPS and chosen[position] and key != current
        rows.append({"key": key, "number": position + 1, "label": label, "state": state, "link": openable})
    return rows


def restore_draft_start(*, policy: BackupPolicy, actor: Actor | None) -> Restore:
    """A new draft restore of the policy's database, with the newest good backup already suggested.
    `actor=None` is the portal itself (the command line without --user), as for every operation."""
    _allowed(actor)
    return Restore.objects.create(
        policy=policy,
        kind=Restore.Kind.RESTORE,
        status=Restore.Status.DRAFT,
        backup=suggested_backup(policy),
        requested_by=actor if actor is not None and actor.is_authenticated else None,
    )


def _allowed(actor: Actor | None) -> None:
    if actor is not None:
        require(actor, Action.RESTORE)


def _editable(restore: Restore, actor: Actor | None) -> None:
    _allowed(actor)
    if restore.status != Restore.Status.DRAFT:
        raise OperationError(f"Restore #{restore.pk} is already {restore.get_status_display().lower()}.")


def _save(restore: Restore, *fields: str) -> None:
    restore.preflight, restore.preflight_at = [], None
    restore.save(update_fields=[*fields, "preflight", "preflight_at"])


def restore_situation_set(*, restore: Restore, actor: Actor | None, situation: str, incident_at: str = "") -> list[str]:
    _editable(restore, actor)
    errors = []
    if situation not in Restore.Situation.values:
        errors.append("Choose what happened.")
    when: datetime | None = None
    if incident_at.strip():
        try:
            when = parse_datetime(incident_at.strip())
            if when is not None:
                when = timezone.make_aware(when) if timezone.is_naive(when) else when
                timezone.localtime(when)  # at the ends of the calendar there is no such local time
        except (ValueError, OverflowError):  # well formed but impossible: 2025-02-30, 25:00
            errors.append(f"{incident_at.strip()!r} is not a date and time that exists; e.g. 2025-01-31 14:05.")
            when = None
        else:
            if when is None:
                errors.append("When did it happen? Give a date and time, e.g. 2025-01-31 14:05.")
            elif when > timezone.now() + timedelta(minutes=5):
                errors.append("The incident cannot be in the future.")
    if errors:
        return errors
    restore.situation, restore.incident_at = situation, when
    _save(restore, "situation", "incident_at")
    return []


def restore_backup_set(*, restore: Restore, actor: Actor | None, backup_id: str) -> list[str]:
    _editable(restore, actor)
    backup = (
        Backup.objects.filter(policy=restore.policy, status=Backup.Status.GOOD, pk=backup_id).first()
        if str(backup_id).isdigit()
        else None
    )
    if backup is None:
        return ["Choose one of the good backups listed."]
    restore.backup = backup
    if restore.is_physical:
        restore.destination = Restore.Destination.INSTANCE
    _save(restore, "backup", "destination")
    return []


def restore_destination_set(
    *,
    restore: Restore,
    actor: Actor | None,
    destination: str,
    database: str = "",
    cluster: str = "",
    data_directory: str = "",
    port: str = "",
    confirm: str = "",
) -> list[str]:
    """Where the data goes. Replace needs the production database's name typed in `confirm`."""
    _editable(restore, actor)
    policy = restore.policy
    if restore.is_physical:
        return _physical_destination_set(restore, data_directory=data_directory, port=port)
    errors = []
    restore.destination_cluster = None
    if destination == Restore.Destination.REPLACE:
        if confirm.strip() != policy.dbname:
            errors.append(f"Type the database's name, {policy.dbname}, to replace it.")
        database = policy.dbname
    elif destination in (Restore.Destination.NEW_DATABASE, Restore.Destination.OTHER_SERVER):
        if confirm.strip():
            errors.append(
                "You typed a name to confirm a replace, but Replace is not chosen: choose it, or clear the name."
            )
        database = database.strip()
        if not DATABASE_NAME.match(database) or database in RESERVED_DATABASES:
            errors.append("Name the new database: letters, digits, _ and -, at most 63, e.g. onboarding_restored.")
        elif destination == Restore.Destination.NEW_DATABASE and database == policy.dbname:
            errors.append(f"{database} is the production database: choose Replace to restore over it.")
        if destination == Restore.Destination.OTHER_SERVER:
            restore.destination_cluster = Cluster.objects.exclude(pk=policy.cluster_id).filter(name=cluster).first()
            if restore.destination_cluster is None:
                errors.append("Choose another cluster of the catalog to restore to.")
    else:
        errors.append("Choose where to restore.")
    if errors:
        return errors
    restore.destination, restore.destination_database = destination, database
    _save(restore, "destination", "destination_database", "destination_cluster")
    return []


def _physical_destination_set(restore: Restore, *, data_directory: str, port: str) -> list[str]:
    errors = []
    directory = Path(data_directory.strip()) if data_directory.strip() else None
    room = Restore._meta.get_field("data_directory").max_length or 500
    if directory is None or not directory.is_absolute():
        errors.append("Give the new server's data directory as an absolute path.")
    elif len(str(directory)) > room:
        errors.append(f"The data directory's path is {len(str(directory))} characters long; at most {room}.")
    number = int(port) if port.strip().isdigit() else None
    if number is None or not 1024 <= number <= 65535:
        errors.append("Give the new server's port, a number from 1024 to 65535.")
    if errors:
        return errors
    restore.destination, restore.data_directory, restore.port = Restore.Destination.INSTANCE, str(directory), number
    restore.destination_database = restore.policy.dbname
    _save(restore, "destination", "data_directory", "port", "destination_database")
    return []


def point_defaults(restore: Restore) -> dict[str, object]:
    """What the point step offers: the window, the restore points, the moments other apps know (incidents), and a
    suggested time (a minute before the incident the DBA named, else five minutes ago)."""
    policy = restore.policy
    window = recovery_window(policy)
    suggested = (
        (restore.incident_at - timedelta(minutes=1)) if restore.incident_at else timezone.now() - timedelta(minutes=5)
    )
    moments = [
        (label, moment)
        for provider in registry.recovery_moments
        for label, moment in provider.moments(policy.cluster.name)
        if window is None or window.start <= moment <= window.end
    ]
    return {
        "window": window,
        "restore_points": list(RestorePoint.objects.filter(cluster=policy.cluster).order_by("-created_at")[:50]),
        "moments": moments,
        "when": timezone.localtime(restore.target_time or suggested).strftime("%Y-%m-%d %H:%M:%S"),
        "zone": timezone.get_current_timezone_name(),
    }


def destination_defaults(restore: Restore) -> dict[str, object]:
    """What the Destination step suggests: a new database (compare, then copy back) — the safe default."""
    policy = restore.policy
    if restore.is_physical:
        servers = Path(settings.RESTORE_SCRATCH_DIR) / "servers"
        return {
            "data_directory": restore.data_directory or str(servers / f"{policy.name}-{restore.pk}"),
            "port": restore.port or free_port(),
        }
    clusters = list(Cluster.objects.exclude(pk=policy.cluster_id).order_by("name"))
    lost = restore.situation == Restore.Situation.LOST_SERVER and clusters  # the managed server is the one gone
    return {
        "destination": restore.destination
        or (Restore.Destination.OTHER_SERVER if lost else Restore.Destination.NEW_DATABASE),
        "database": restore.destination_database
        if restore.destination in (Restore.Destination.NEW_DATABASE, Restore.Destination.OTHER_SERVER)
        else f"{policy.dbname}_restored_{restore.pk}",
        "clusters": clusters,
    }


def restore_preflight_run(*, restore: Restore, actor: Actor | None) -> list[Finding]:
    """Run every pre-flight check now (the backup is read back whole) and keep the findings on the draft."""
    _editable(restore, actor)
    findings = pitr_findings(restore) if restore.is_physical else restore_preflight(restore, reread=True)
    restore.preflight, restore.preflight_at = [finding.as_data() for finding in findings], timezone.now()
    restore.save(update_fields=["preflight", "preflight_at"])
    return findings


def restore_request(*, restore: Restore, actor: Actor | None, address: str | None = None) -> Operation:
    """Queue the restore (DBA). Refused unless its pre-flight ran within the last 15 minutes without a blocker."""
    _editable(restore, actor)
    if restore.preflight_at is None or timezone.now() - restore.preflight_at > PREFLIGHT_VALID:
        raise OperationError("Run the pre-flight checks first (they are valid for 15 minutes).")
    if refused := blockers(findings_from(restore.preflight)):
        raise OperationError("The pre-flight found a problem: " + " ".join(f.title for f in refused))
    return _queue(restore, RESTORE_KIND, actor, address)


def _queue(restore: Restore, kind: str, actor: Actor | None, address: str | None) -> Operation:
    """The operation (with its audit entry, refusals included) first, then the link to it. The run finds its
    restore by the operation's parameters, so a worker that is quicker than the link still finds it."""
    backup = restore.backup
    assert backup is not None
    operation = operation_request(
        kind=kind,
        target=restore.operation_target,
        # replacing a database holds its cluster alone; a restore beside it, a drill or a scratch instance shares it
        scope=restore_cluster(restore).target,
        scope_exclusive=restore.destination == Restore.Destination.REPLACE,
        actor=actor,
        address=address,
        parameters={
            "restore": restore.pk,
            "policy": restore.policy.name,
            "backup": backup.pk,
            "destination": restore.destination,
            "database": restore.destination_database,
        },
    )
    Restore.objects.filter(pk=restore.pk, status=Restore.Status.DRAFT).update(
        operation=operation, status=Restore.Status.QUEUED, requested_at=operation.created_at
    )
    Restore.objects.filter(pk=restore.pk).update(
        requested_by=actor if actor is not None and actor.is_authenticated else None
    )
    restore.refresh_from_db()
    return operation


def drill_request(
    *, policy: BackupPolicy, actor: Actor | None, address: str | None = None, cluster_loss: bool = False
) -> Operation:
    """Queue a restore drill: the newest good backup into a scratch database, verified, dropped. A pgBackRest
    policy's drill is a point-in-time one (a random point of the last day, proved by the marker rows); with
    `cluster_loss`, the latest point from the repository alone, measuring how many committed seconds were lost."""
    _allowed(actor)
    if cluster_loss and not policy.is_physical:
        raise OperationError(f"{policy.name} takes logical backups: a cluster-loss drill needs a pgBackRest policy.")
    backup = policy.backups.filter(status=Backup.Status.GOOD).order_by("-started_at", "-id").first()
    if backup is None:
        raise OperationError(f"{policy.cluster.name}/{policy.dbname} has no good backup to drill.")
    restore = Restore.objects.create(
        policy=policy,
        backup=backup,
        kind=Restore.Kind.LOSS_DRILL if cluster_loss else Restore.Kind.DRILL,
        situation=Restore.Situation.VERIFICATION,
        destination=Restore.Destination.SCRATCH,
        destination_database=policy.dbname,
    )
    if restore.is_physical:
        restore.port, restore.data_directory = free_port(), str(scratch_servers() / f"drill-{restore.pk}")
        restore.destination = Restore.Destination.INSTANCE
        if cluster_loss:
            restore.target_type, restore.target_label = Restore.TargetType.LATEST, "the latest point (cluster loss)"
        else:  # a random point of the last day, proved by the markers
            restore.target_type, restore.target_time = Restore.TargetType.TIME, drill_point_choose(policy)
            restore.backup = base_backup_for(policy, restore.target_time) or backup
            restore.target_label = f"drill point {restore.target_time:%Y-%m-%d %H:%M:%S.%f} UTC"
        restore.save(
            update_fields=[
                "port",
                "data_directory",
                "destination",
                "target_type",
                "target_time",
                "backup",
                "target_label",
            ]
        )
    try:
        return _queue(restore, DRILL_KIND, actor, address)
    except BaseException:
        restore.delete()  # never queued: nothing to keep
        raise
