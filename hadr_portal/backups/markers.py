"""Marker rows: the proof that a point-in-time restore landed exactly at its point.

Every HADR_PITR_MARKER_SECONDS the portal writes one row into `hadr_portal_marker` (in the policy's database on the
cluster's primary). A drill picks a random point of the last day, away from any marker's commit, restores to it
and counts: every marker written at or before the point must be there, none written after. The table is created
by the admin account; rows are written as the backup role (INSERT granted on that table only).
"""

from __future__ import annotations

import logging
import random
from datetime import datetime, timedelta
from typing import Any

import psycopg
from django.utils import timezone
from psycopg import sql

from hadr_portal.adapters.pg.connection import BackupFailed, with_database
from hadr_portal.adapters.pg.restore import RestoreFailed
from hadr_portal.core.operation_kinds import OperationContext
from hadr_portal.databases.models import Purpose

from .backup import cluster_conninfo
from .models import BackupPolicy, Restore
from .pitr import recovery_window
from .preflight import restore_server

logger = logging.getLogger(__name__)

MARKER_TABLE = "hadr_portal_marker"
CLEARANCE = timedelta(milliseconds=500)  # a drill's point keeps this far from any marker (its commit follows `at`)


def markers_table_ensure(policy: BackupPolicy) -> None:
    admin = cluster_conninfo(policy.cluster, policy.dbname, purpose=Purpose.ADMIN)
    backup_user, _ = policy.cluster.credentials(Purpose.BACKUP)
    with psycopg.connect(admin.conninfo(), autocommit=True, connect_timeout=5) as conn:
        # a restored copy paused in recovery cannot create it: installed here, amcheck checks every PITR restore
        conn.execute("CREATE EXTENSION IF NOT EXISTS amcheck")
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())"
            ).format(sql.Identifier(MARKER_TABLE))
        )
        if backup_user != policy.cluster.user:
            conn.execute(
                sql.SQL("GRANT INSERT ON {} TO {}").format(sql.Identifier(MARKER_TABLE), sql.Identifier(backup_user))
            )
            conn.execute(
                sql.SQL("GRANT USAGE ON SEQUENCE {} TO {}").format(
                    sql.Identifier(f"{MARKER_TABLE}_id_seq"), sql.Identifier(backup_user)
                )
            )


def marker_write(policy: BackupPolicy) -> datetime | None:
    """One marker row on the cluster's primary, as the backup role; its time (None: no primary reachable)."""
    try:
        address = cluster_conninfo(policy.cluster, policy.dbname, purpose=Purpose.BACKUP)
        with psycopg.connect(address.conninfo(), autocommit=True, connect_timeout=5) as conn:
            row = conn.execute(
                sql.SQL("INSERT INTO {} DEFAULT VALUES RETURNING at").format(sql.Identifier(MARKER_TABLE))
            ).fetchone()
    except psycopg.errors.UndefinedTable:
        markers_table_ensure(policy)
        return marker_write(policy)
    except (psycopg.Error, BackupFailed) as exc:
        logger.warning("marker of %s not written: %s", policy.name, exc)
        return None
    return row[0] if row else None


def markers_write_all() -> int:
    written = 0
    for policy in BackupPolicy.objects.filter(engine=BackupPolicy.Engine.PGBACKREST, enabled=True).select_related(
        "cluster"
    ):
        written += marker_write(policy) is not None
    return written


def marker_times(conninfo: str) -> list[datetime]:
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
        try:
            rows = conn.execute(
                sql.SQL("SELECT at FROM {} ORDER BY at").format(sql.Identifier(MARKER_TABLE))
            ).fetchall()
        except psycopg.errors.UndefinedTable:
            return []
    return [row[0] for row in rows]


def _live_markers(policy: BackupPolicy) -> list[datetime]:
    try:
        return marker_times(cluster_conninfo(policy.cluster, policy.dbname, purpose=Purpose.MONITOR).conninfo())
    except (psycopg.Error, BackupFailed):
        return []


def drill_point_choose(policy: BackupPolicy, *, now: datetime | None = None, rng: Any = random) -> datetime:
    """A random point of the last 24 h that PITR can reach (after the oldest set), never within CLEARANCE of a
    marker (a marker's commit follows its `at` by a moment: a point right there would prove nothing)."""
    now = now or timezone.now()
    window = recovery_window(policy, now=now)
    earliest = max(now - timedelta(hours=24), window.start if window else now - timedelta(minutes=1))
    latest = now - timedelta(seconds=max(30, policy.archive_timeout_seconds * 2))
    if latest <= earliest:
        latest = earliest + timedelta(seconds=1)
    times = _live_markers(policy)
    for _ in range(100):
        point = earliest + (latest - earliest) * rng.random()
        if all(abs(point - at) > CLEARANCE for at in times):
            return (
                point.replace(microsecond=0)
                if all(abs(point.replace(microsecond=0) - at) > CLEARANCE for at in times)
                else point
            )
    return earliest


def drill_finish(context: OperationContext, restore: Restore) -> dict[str, Any]:
    """Count the markers in the restored instance against the live ones: at or before the point present, after it
    absent. A drill whose markers disagree fails."""
    policy = restore.policy
    point = restore.target_time
    restored = marker_times(with_database(restore_server(restore), policy.dbname).conninfo())
    live = _live_markers(policy)
    if point is None:  # "latest" (a cluster-loss drill): from the repository alone, what would have been lost
        lost = [at for at in live if restore.requested_at and at <= restore.requested_at and at not in restored]
        seconds = (
            max(0.0, (restore.requested_at - restore.recovered_to).total_seconds())
            if restore.requested_at and restore.recovered_to
            else None
        )
        loss = {"restored": len(restored), "live": len(live), "lost_markers": len(lost), "lost_seconds": seconds}
        Restore.objects.filter(pk=restore.pk).update(marker_check=loss, achieved_rpo_seconds=seconds)
        context.log(
            f"Cluster loss, from the repository alone: the last transaction recovered committed {seconds:.1f} s before "
            f"the drill began; {len(lost)} marker row(s) written before it were not in the archive."
            if seconds is not None
            else "Cluster loss: no transaction time to measure the loss from."
        )
        return loss
    expected = [at for at in live if at <= point]
    present = sum(1 for at in restored if at <= point)
    extra = sum(1 for at in restored if at > point)
    check: dict[str, Any] = {
        "point": point.isoformat(),
        "expected_before": len(expected),
        "present_before": present,
        "present_after": extra,
        "exact": present == len(expected) and extra == 0,
    }
    # how far before its point the recovery landed: the last transaction replayed (else the set's own end)
    landed = restore.recovered_to or (restore.backup.consistent_at if restore.backup else None)
    achieved = max(0.0, (point - landed).total_seconds()) if landed else None
    Restore.objects.filter(pk=restore.pk).update(marker_check=check, achieved_rpo_seconds=achieved)
    context.log(
        f"Markers at or before the point: {present} of {len(expected)}; after it: {extra} (expected 0)."
        + (" Exact." if check["exact"] else "")
    )
    if not check["exact"]:
        raise RestoreFailed(
            f"the restore did not land at its point: {present} of {len(expected)} markers before it, {extra} after"
        )
    return check
