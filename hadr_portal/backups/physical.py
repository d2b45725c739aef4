"""Physical backups on pgBackRest: a set taken as an operation, the portal's table kept equal to `pgbackrest info`,
and sets expired one by one when the calendar (not pgBackRest's count) says so.

A set is a Backup row with engine "pgbackrest" whose key is the set's label (`20261207-004725F`). It is good
once pgBackRest has finished it (pgBackRest checksums every file in the set's own manifest, and lists a set in
`info` only when it is complete): a killed backup leaves nothing listed, and the next one resumes or removes
what it left.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from hadr_portal.adapters.commands import stop_session
from hadr_portal.adapters.pgbackrest import BackupSet, PgBackRestError, StanzaInfo
from hadr_portal.adapters.pgbackrest import backup as pgbackrest_backup
from hadr_portal.adapters.pgbackrest import expire as pgbackrest_expire
from hadr_portal.adapters.pgbackrest import info as pgbackrest_info
from hadr_portal.core.killpoints import kill_point
from hadr_portal.core.operation_kinds import OperationContext

from .models import Backup, BackupPolicy
from .stanza import stanza_for

logger = logging.getLogger(__name__)


class ExpireRefused(Exception):
    """Retention may not remove this set now; the message says why."""


def physical_backup_take(
    context: OperationContext, *, backup: Backup, span: tuple[int, int] = (0, 100), set_type: str = ""
) -> None:
    """Take one pgBackRest set of `backup`'s policy into repository 1 and record it from `info`."""
    policy = backup.policy
    set_type = set_type or backup.set_type or policy.set_type
    stanza = stanza_for(policy)

    def progress(percent: int, message: str) -> None:
        context.progress(span[0] + (span[1] - span[0]) * percent // 100, message)

    progress(2, "Pre-checks")
    before = pgbackrest_info(stanza)
    known = {item.label for item in before.sets(1)}
    if set_type != "full" and not before.sets(1):
        context.log(f"No full backup in {stanza.repo(1).label} yet: taking a full one instead of {set_type}.")
        set_type = "full"
    started = timezone.now()
    Backup.objects.filter(pk=backup.pk).update(started_at=started, set_type=set_type, repo=1)
    context.log(f"As {stanza.run_as}: {stanza.command_line('backup', f'--type={set_type}', '--repo=1')}")

    def on_start(session: int) -> None:
        Backup.objects.filter(pk=backup.pk).update(manifest={"session": session})
        kill_point("backup.pgbackrest-started")

    def on_progress(done: int, total: int) -> None:
        progress(5 + int(90 * done / max(total, 1)), f"{done / 1e6:.0f} of {total / 1e6:.0f} MB copied")

    after = pgbackrest_backup(
        stanza, type=set_type, repo=1, on_start=on_start, on_progress=on_progress, checkpoint=context.checkpoint
    )
    new = [item for item in after.sets(1) if item.label not in known]
    if not new:
        raise PgBackRestError("pgbackrest backup finished but info lists no new set in repo1")
    made = new[-1]
    _record(backup, made, after, status=Backup.Status.GOOD)
    if made.error:
        context.log(
            "pgBackRest found page checksum errors while copying: the set is complete, but the cluster has "
            "damaged pages. See pgBackRest's log and run amcheck.",
            level="warning",
        )
    context.log(
        f"Set {made.label} ({made.type}): {made.database_size / 1e6:.1f} MB of data, {made.repo_size / 1e6:.1f} MB "
        f"stored, WAL {made.wal_start}…{made.wal_stop}, recoverable from {made.stopped_at:%Y-%m-%d %H:%M:%S} UTC"
    )
    progress(100, "Good")


def physical_backup_cleanup(backup: Backup) -> None:
    """After a failed or killed attempt: stop the pgbackrest it started, if it still runs (its lock would refuse
    the next backup). Its partial set is not in `info` and never becomes good."""
    session = (backup.manifest or {}).get("session")
    if isinstance(session, int) and session > 1 and stop_session(session):
        logger.warning("stopped pgbackrest session %s left by backup %s", session, backup.pk)


def _record(backup: Backup, made: BackupSet, info: StanzaInfo, *, status: str) -> None:
    Backup.objects.filter(pk=backup.pk).update(**_fields(made, info), status=status, finished_at=timezone.now())


def _fields(made: BackupSet, info: StanzaInfo) -> dict[str, object]:
    return {
        "key": made.label,
        "size": made.repo_size,
        "database_size": made.database_size,
        "set_type": made.type,
        "repo": made.repo,
        "prior": made.prior or "",
        "wal_start": made.wal_start,
        "wal_stop": made.wal_stop,
        "lsn": made.lsn_stop,
        "consistent_at": made.stopped_at,
        "server_version": info.pg_version,
        "error": "page checksum errors found while copying" if made.error else "",
        "manifest": {
            "format": "pgbackrest-set/1",
            "stanza": info.name,
            "label": made.label,
            "type": made.type,
            "repo": made.repo,
            "prior": made.prior,
            "references": list(made.references),
            "started_at": made.started_at.isoformat(),
            "stopped_at": made.stopped_at.isoformat(),
            "lsn": [made.lsn_start, made.lsn_stop],
            "wal": [made.wal_start, made.wal_stop],
            "database_size": made.database_size,
            "repo_size": made.repo_size,
            "system_id": info.system_id,
        },
    }


def sets_sync(policy: BackupPolicy, *, info: StanzaInfo | None = None) -> tuple[int, int]:
    """Make the portal's sets of `policy` those `pgbackrest info` lists: a set taken outside the portal is added
    (manual), one gone from the repository (expired by hand) is marked deleted. Returns (added, removed)."""
    info = info or pgbackrest_info(stanza_for(policy))
    listed = {(item.repo, item.label): item for item in info.backups}
    rows = {
        (row.repo, row.key): row
        for row in policy.backups.filter(engine=BackupPolicy.Engine.PGBACKREST).exclude(key="")
        if row.status in (Backup.Status.GOOD, Backup.Status.DELETED)
    }
    added = removed = 0
    with transaction.atomic():
        for key, made in listed.items():
            row = rows.get(key)
            if row is None:
                Backup.objects.create(
                    policy=policy,
                    kind=Backup.Kind.MANUAL,
                    engine=BackupPolicy.Engine.PGBACKREST,
                    storage=policy.copy_storage if made.repo == 2 and policy.copy_storage else policy.storage,
                    status=Backup.Status.GOOD,
                    started_at=made.started_at,
                    **_fields(made, info),
                    finished_at=made.stopped_at,
                )
                added += 1
            elif row.status == Backup.Status.DELETED:
                continue
            else:
                Backup.objects.filter(pk=row.pk).update(size=made.repo_size, database_size=made.database_size)
        for held, row in rows.items():
            if held not in listed and row.status == Backup.Status.GOOD:
                Backup.objects.filter(pk=row.pk).update(
                    status=Backup.Status.DELETED,
                    deleted_at=timezone.now(),
                    error="no longer in the pgBackRest repository (expired outside the portal)",
                )
                removed += 1
    return added, removed


def newest_full(policy: BackupPolicy, repo: int) -> Backup | None:
    return (
        policy.backups.filter(
            status=Backup.Status.GOOD, engine=BackupPolicy.Engine.PGBACKREST, repo=repo, set_type="full"
        )
        .order_by("-started_at", "-id")
        .first()
    )


def dependents(backup: Backup) -> list[Backup]:
    """The diff and incr sets that build on `backup` (pgBackRest expires them with it)."""
    found, frontier = [], [backup.key]
    rows = list(
        backup.policy.backups.filter(status=Backup.Status.GOOD, engine=BackupPolicy.Engine.PGBACKREST, repo=backup.repo)
    )
    while frontier:
        label = frontier.pop()
        for row in rows:
            if row.prior == label and row not in found:
                found.append(row)
                frontier.append(row.key)
    return found


def set_expire(backup: Backup, *, archiving_broken: Callable[[BackupPolicy], str | None]) -> list[Backup]:
    """Remove `backup`'s set (and what depends on it) from its repository with `pgbackrest expire --set`.

    Refused while archiving is broken (nothing leaves the repository while new WAL does not reach it), and for the
    newest full set of a repository (the base a gap-free WAL chain to now needs). Returns the rows marked deleted.
    """
    policy = backup.policy
    broken = archiving_broken(policy)
    if broken:
        raise ExpireRefused(f"archiving is broken ({broken}): nothing is expired until it works again")
    if backup.set_type == "full" and (newest := newest_full(policy, backup.repo or 1)) and newest.pk == backup.pk:
        raise ExpireRefused(
            f"{backup.key} is the newest full set of repo{backup.repo}: point-in-time recovery needs it"
        )
    gone = [backup, *dependents(backup)]
    stanza = stanza_for(policy)
    pgbackrest_expire(stanza, label=backup.key, repo=backup.repo or 1)
    now: datetime = timezone.now()
    Backup.objects.filter(pk__in=[row.pk for row in gone]).update(status=Backup.Status.DELETED, deleted_at=now)
    sets_sync(policy, info=pgbackrest_info(stanza))
    return gone
