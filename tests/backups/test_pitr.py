"""Point-in-time recovery through the portal, against the real primary, replica and pgBackRest: a physical set
taken as an operation and equal to `pgbackrest info`, a restore to a second into a scratch instance paused there,
exact rows, then discarded; a point refused outside the window, in the future or in a DST fold."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest
from django.urls import reverse

from hadr_portal.adapters.pg.scratch import port_in_use
from hadr_portal.adapters.pgbackrest import info
from hadr_portal.adapters.readonly import ReadOnlyQueryError
from hadr_portal.backups import services
from hadr_portal.backups.archiving import ArchiveState, Gap
from hadr_portal.backups.markers import marker_write
from hadr_portal.backups.models import Backup, BackupPolicy, Restore, RestorePoint, StorageTarget
from hadr_portal.backups.physical import sets_sync
from hadr_portal.backups.pitr import local_time_parse, restore_point_in_time_set
from hadr_portal.backups.replace import kept_data_remove, replace_request
from hadr_portal.backups.restore_points import restore_point_create
from hadr_portal.backups.retention import retention_plan
from hadr_portal.backups.scratch import scratch_discard, scratch_expire_due, scratch_query, table_counts
from hadr_portal.backups.stanza import StanzaProblem, repository_for, stanza_for
from hadr_portal.backups.wizard import drill_request, restore_draft_start, restore_preflight_run, restore_request
from hadr_portal.core.operation_kinds import OperationError
from hadr_portal.core.operations import operation_execute
from hadr_portal.core.permissions import Role
from hadr_portal.databases.topology import cluster_probe
from tests.backups.conftest import archived_past, backup_now, run, sql
from tests.infra.plugin import Infrastructure

pytestmark = pytest.mark.slow


def test_a_physical_set_is_an_operation_and_matches_info(physical_policy: BackupPolicy) -> None:
    full = backup_now(physical_policy)
    assert full.status == "good" and full.set_type == "full" and full.repo == 1
    assert full.key.endswith("F") and full.size and full.consistent_at and full.wal_start and full.wal_stop
    incr = backup_now(physical_policy, "incr")
    assert incr.set_type == "incr" and incr.prior == full.key
    listed = {item.label for item in info(stanza_for(physical_policy)).sets(1)}
    assert {full.key, incr.key} <= listed
    assert sets_sync(physical_policy) == (len(listed - {full.key, incr.key}), 0)
    ours = set(physical_policy.backups.filter(status="good").values_list("key", flat=True))
    assert ours == listed  # the portal's table and pgBackRest agree


def test_restore_to_a_second_into_a_scratch_instance(physical_policy: BackupPolicy, infra: Infrastructure) -> None:
    backup_now(physical_policy)
    sql(infra, "CREATE TABLE IF NOT EXISTS pitr_rows (id serial PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())")
    sql(infra, "TRUNCATE pitr_rows")
    for _ in range(20):
        sql(infra, "INSERT INTO pitr_rows DEFAULT VALUES")
        time.sleep(0.01)
    tenth = sql(infra, "SELECT at FROM pitr_rows ORDER BY id OFFSET 9 LIMIT 1")[0][0]
    point = tenth + timedelta(milliseconds=5)  # after the 10th commit, before the 11th row
    archived_past(infra, point)

    restore = restore_draft_start(policy=physical_policy, actor=None)
    errors = restore_point_in_time_set(
        restore=restore, actor=None, target_type="time", when=f"{point.astimezone(UTC):%Y-%m-%d %H:%M:%S}", utc=True
    )
    # seconds only in the form: use the exact point through the model for a row-exact check
    assert errors == []
    Restore.objects.filter(pk=restore.pk).update(target_time=point)
    restore.refresh_from_db()
    findings = restore_preflight_run(restore=restore, actor=None)
    assert any("Base backup" in finding.title for finding in findings)
    restore = run(restore_request(restore=restore, actor=None))
    assert restore.status == "ready", restore.error
    assert port_in_use(restore.port) and restore.scratch_expires_at and restore.rto_seconds
    with psycopg.connect(
        f"host=127.0.0.1 port={restore.port} dbname=onboarding user=postgres password={infra.demo_password}"
    ) as conn:
        assert conn.execute("SELECT count(*), max(at) FROM pitr_rows").fetchone() == (10, tenth)
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)  # paused there, read-only

    answer = scratch_query(restore=restore, actor=None, sql="SELECT count(*) AS rows FROM pitr_rows")
    assert answer.columns == ["rows"] and answer.rows == [(10,)]
    with pytest.raises(ReadOnlyQueryError, match="refused"):
        scratch_query(restore=restore, actor=None, sql="SELECT pg_terminate_backend(1)")
    with pytest.raises(ReadOnlyQueryError, match="refused"):
        scratch_query(restore=restore, actor=None, sql="DELETE FROM pitr_rows")
    counts = {row["table"]: row for row in table_counts(restore)}
    assert counts["public.pitr_rows"]["restored"] == 10 and counts["public.pitr_rows"]["live"] == 20
    with pytest.raises(OperationError, match="Type the restore's number"):
        scratch_discard(restore=restore, actor=None, confirm="yes")
    discarded = scratch_discard(restore=restore, actor=None, confirm=str(restore.pk))
    assert discarded.outcome == "discarded" and discarded.status == "done"
    assert not port_in_use(restore.port) and not Path(restore.data_directory).exists()


def test_a_restore_point_is_a_target(physical_policy: BackupPolicy, infra: Infrastructure) -> None:
    backup_now(physical_policy)
    RestorePoint.objects.create(cluster=physical_policy.cluster, name="missing-in-wal", lsn="0/0", source="cli")
    restore = restore_draft_start(policy=physical_policy, actor=None)
    assert restore_point_in_time_set(restore=restore, actor=None, target_type="name", value="nope") == [
        "demo has no restore point named 'nope'."
    ]
    assert restore_point_in_time_set(restore=restore, actor=None, target_type="name", value="missing-in-wal") == []
    assert restore.target_type == "name" and restore.backup is not None


def test_points_outside_the_window_are_refused_with_it(physical_policy: BackupPolicy) -> None:
    restore = restore_draft_start(policy=physical_policy, actor=None)
    assert (
        "no good pgBackRest backup" in restore_point_in_time_set(restore=restore, actor=None, target_type="latest")[0]
    )
    backup_now(physical_policy)
    past = restore_point_in_time_set(restore=restore, actor=None, target_type="time", when="2001-01-01 00:00:00")
    assert "outside the window: any second from" in past[0]
    future = (datetime.now(UTC) + timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S")
    assert (
        "is in the future"
        in restore_point_in_time_set(restore=restore, actor=None, target_type="time", when=future, utc=True)[0]
    )
    assert (
        "is not a date and time"
        in restore_point_in_time_set(restore=restore, actor=None, target_type="time", when="yesterday")[0]
    )
    assert (
        "transaction id is a number"
        in restore_point_in_time_set(restore=restore, actor=None, target_type="xid", value="12; DROP")[0]
    )


def test_dst_folds_and_gaps_are_refused() -> None:
    zone = ZoneInfo("America/Sao_Paulo")
    berlin = ZoneInfo("Europe/Berlin")
    with pytest.raises(ValueError, match="happened twice"):
        local_time_parse("2026-10-25 02:30:00", berlin)
    with pytest.raises(ValueError, match="never happened"):
        local_time_parse("2026-03-29 02:30:00", berlin)
    assert local_time_parse("2026-12-07 17:40:05", zone).utcoffset() == timedelta(hours=-3)


def test_a_scratch_instance_left_alone_is_warned_then_removed(
    physical_policy: BackupPolicy, infra: Infrastructure, client_as
) -> None:
    backup_now(physical_policy)
    restore = restore_draft_start(policy=physical_policy, actor=None)
    assert restore_point_in_time_set(restore=restore, actor=None, target_type="immediate") == []
    restore_preflight_run(restore=restore, actor=None)
    restore = run(restore_request(restore=restore, actor=None))
    assert restore.status == "ready", restore.error
    page = client_as(Role.VIEWER).get(reverse("databases:clusters")).content.decode()
    assert f"127.0.0.1:{restore.port}" in page and "Scratch instances" in page  # none outlives the portal's knowledge
    assert scratch_expire_due(now=restore.scratch_expires_at - timedelta(minutes=30)) == (1, 0)
    assert scratch_expire_due(now=restore.scratch_expires_at + timedelta(seconds=1)) == (0, 1)
    restore.refresh_from_db()
    assert restore.outcome == "expired" and restore.scratch_removed_at and not port_in_use(restore.port)


def test_a_point_in_time_drill_lands_exactly_on_its_point(
    physical_policy: BackupPolicy, infra: Infrastructure, client_as
) -> None:
    backup_now(physical_policy)
    for _ in range(3):  # the periodic task writes one a minute; a drill needs some on both sides of its point
        marker_write(physical_policy)
        time.sleep(0.7)
    archived_past(infra, datetime.now(UTC))
    drill = run(drill_request(policy=physical_policy, actor=None))
    assert drill.status == "verified", drill.error
    check = drill.marker_check
    assert check["exact"] and check["present_after"] == 0 and check["present_before"] == check["expected_before"]
    assert drill.achieved_rpo_seconds is not None and drill.rto_seconds
    assert not Path(drill.data_directory).exists() and drill.scratch_removed_at
    assert any(item["name"] == "amcheck" and item["ok"] for item in drill.verification)
    page = client_as(Role.VIEWER).get(reverse("incidents:readiness")).content.decode()
    assert 'id="pitr-drills"' in page and f"Restore drill #{drill.pk}" in page and "exact" in page


def test_a_cluster_loss_drill_restores_the_latest_point_from_the_repository_alone(
    physical_policy: BackupPolicy, infra: Infrastructure
) -> None:
    backup_now(physical_policy)
    marker_write(physical_policy)
    archived_past(infra, datetime.now(UTC))
    drill = run(drill_request(policy=physical_policy, actor=None, cluster_loss=True))
    assert drill.status == "verified", drill.error
    assert drill.kind == "loss_drill" and drill.target_type == "latest"
    # archive_timeout 10 s and a WAL switch just before: what reached the repository is seconds old at most
    assert drill.achieved_rpo_seconds is not None and drill.achieved_rpo_seconds < 15
    assert drill.marker_check["lost_markers"] == 0
    assert "Cluster loss, from the repository alone" in "\n".join(
        drill.operation.log_lines.values_list("message", flat=True)
    )


def test_replacing_the_cluster_takes_it_back_to_the_point(physical_policy: BackupPolicy, infra: Infrastructure) -> None:
    backup_now(physical_policy)
    sql(infra, "DROP TABLE IF EXISTS pitr_replace")
    sql(infra, "CREATE TABLE pitr_replace (id int PRIMARY KEY)")
    sql(infra, "INSERT INTO pitr_replace SELECT generate_series(1, 5)")
    time.sleep(0.3)
    point = datetime.now(UTC)
    time.sleep(0.3)
    sql(infra, "INSERT INTO pitr_replace SELECT generate_series(6, 9)")  # the bad change, after the point
    archived_past(infra, point)
    restore = restore_draft_start(policy=physical_policy, actor=None)
    assert restore_point_in_time_set(restore=restore, actor=None, target_type="immediate") == []
    Restore.objects.filter(pk=restore.pk).update(target_type="time", target_time=point, target_label="the test's point")
    restore.refresh_from_db()
    restore_preflight_run(restore=restore, actor=None)
    restore = run(restore_request(restore=restore, actor=None))
    assert restore.status == "ready", restore.error
    with pytest.raises(OperationError, match="Type the cluster's name"):
        replace_request(restore=restore, actor=None, confirm="yes")

    operation = operation_execute(operation_id=replace_request(restore=restore, actor=None, confirm="demo").pk)
    assert operation is not None and operation.status == "succeeded", operation and operation.error
    restore.refresh_from_db()
    assert restore.outcome == "replaced" and restore.steps == ["safety", "stop", "swap", "start", "promote", "rebuild"]
    assert sql(infra, "SELECT count(*) FROM pitr_replace") == [(5,)]  # back at the point
    assert operation.result["replicas_rebuilt"] == ["replica"]
    assert Path(restore.kept_data_directory, "PG_VERSION").exists() and not port_in_use(restore.port)
    assert Backup.objects.get(pk=restore.safety_backup_id).status == "good"
    sql(infra, "INSERT INTO pitr_replace VALUES (100)")  # it takes writes, archives on its new timeline
    archived_past(infra, datetime.now(UTC))
    assert backup_now(physical_policy).status == "good"
    with psycopg.connect(infra.replica.conninfo("onboarding")) as conn:  # the rebuilt replica follows it
        deadline = time.monotonic() + 30
        while conn.execute("SELECT count(*) FROM pitr_replace").fetchone() != (6,) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert conn.execute("SELECT count(*) FROM pitr_replace").fetchone() == (6,)
        # rebuilt from the primary, it archives with its own data directory once promoted
        assert f"--pg1-path={infra.replica.data_dir}" in conn.execute("SHOW archive_command").fetchone()[0]
    assert f"--pg1-path={infra.primary.data_dir}" in sql(infra, "SHOW archive_command")[0][0]
    kept_data_remove(restore=restore, actor=None, confirm=restore.kept_data_name)
    assert not Path(restore.kept_data_directory).exists()


def test_points_in_a_wal_gap_are_refused_saying_so(physical_policy: BackupPolicy) -> None:
    backup_now(physical_policy)
    now = datetime.now(UTC)
    gap = Gap(start=now - timedelta(seconds=20), dropped_at=now - timedelta(seconds=15), end=None)
    state = ArchiveState(checked_at=now, objective_seconds=30, gaps=(gap,), wal_dropped=True)
    BackupPolicy.objects.filter(pk=physical_policy.pk).update(archive_state=state.as_data())
    physical_policy.refresh_from_db()
    restore = restore_draft_start(policy=physical_policy, actor=None)
    inside = (now - timedelta(seconds=10)).strftime("%Y-%m-%d %H:%M:%S")
    errors = restore_point_in_time_set(restore=restore, actor=None, target_type="time", when=inside, utc=True)
    assert errors and errors[0].startswith("PITR impossible between") and "the next full backup" in errors[0]


def test_calendar_retention_expires_whole_sets_with_pgbackrest(physical_policy: BackupPolicy) -> None:
    BackupPolicy.objects.filter(pk=physical_policy.pk).update(
        retention="calendar", keep_daily=1, keep_weekly=0, keep_monthly=0
    )
    physical_policy.refresh_from_db()
    old_full = backup_now(physical_policy)
    old_incr = backup_now(physical_policy, "incr")
    new_full = backup_now(physical_policy)
    two_days = timedelta(days=2)
    for row in (old_full, old_incr):  # as if taken two days ago (scheduled)
        Backup.objects.filter(pk=row.pk).update(started_at=row.started_at - two_days, kind="scheduled")
    Backup.objects.filter(pk=new_full.pk).update(kind="scheduled")
    plan = {decision.backup.pk: decision for decision in retention_plan(physical_policy)}
    assert plan[new_full.pk].delete is False and "newest full set" in plan[new_full.pk].reason
    assert plan[old_full.pk].delete and plan[old_incr.pk].delete and "goes with full" in plan[old_incr.pk].reason

    broken = ArchiveState(checked_at=datetime.now(UTC), objective_seconds=30, failing=True, error="S3 down")
    BackupPolicy.objects.filter(pk=physical_policy.pk).update(archive_state=broken.as_data())
    physical_policy.refresh_from_db()
    assert services.backups_prune(policy=physical_policy, dry_run=False) == []  # nothing while archiving is broken
    assert Backup.objects.get(pk=old_full.pk).status == "good"

    BackupPolicy.objects.filter(pk=physical_policy.pk).update(archive_state={})
    physical_policy.refresh_from_db()
    pruned = services.backups_prune(policy=physical_policy, dry_run=False)
    assert {decision.backup.pk for decision in pruned} == {old_full.pk, old_incr.pk}
    listed = {item.label for item in info(stanza_for(physical_policy)).sets(1)}
    assert old_full.key not in listed and old_incr.key not in listed and new_full.key in listed
    assert Backup.objects.get(pk=old_incr.pk).status == "deleted"


def test_storage_targets_become_repositories_and_bad_ones_are_refused(
    physical_policy: BackupPolicy, monkeypatch
) -> None:
    """The S3 repository itself is exercised end to end by tests/adapters/test_pgbackrest.py (moto over HTTPS)."""
    monkeypatch.setenv("TEST_S3_KEY", "AKIA-TEST")
    monkeypatch.setenv("TEST_S3_SECRET", "secret-test")
    config = {
        "bucket": "pitr-copy",
        "prefix": "demo",
        "endpoint_url": "https://127.0.0.1:9443",
        "region": "eu-west-1",
        "access_key_env": "TEST_S3_KEY",
        "secret_key_env": "TEST_S3_SECRET",
        "verify_tls": False,
    }
    offsite = StorageTarget.objects.create(name="pitr-offsite", kind="s3", config=config)
    BackupPolicy.objects.filter(pk=physical_policy.pk).update(copy_storage=offsite)
    physical_policy.refresh_from_db()
    stanza = stanza_for(physical_policy)
    local, s3 = stanza.repos
    assert local.kind == "posix" and local.path.endswith("/pitr/pgbackrest")
    assert (s3.kind, s3.bucket, s3.path, s3.endpoint, s3.port, s3.uri_style) == (
        "s3",
        "pitr-copy",
        "/demo/pgbackrest",
        "127.0.0.1",
        9443,
        "path",
    )
    assert "repo2-storage-verify-tls=n" in stanza.render() and "secret-test" not in stanza.render()
    assert "repo2-s3-key-secret=secret-test" in stanza.render_secrets()
    offsite.config = {**config, "endpoint_url": "http://127.0.0.1:9000"}
    with pytest.raises(StanzaProblem, match="only HTTPS"):
        repository_for(offsite, 2)
    monkeypatch.delenv("TEST_S3_SECRET")
    offsite.config = config
    with pytest.raises(StanzaProblem, match="not set in the environment"):
        repository_for(offsite, 2)


def scratch_rows(restore: Restore, infra: Infrastructure, sql_text: str) -> list[tuple]:
    with psycopg.connect(
        f"host=127.0.0.1 port={restore.port} dbname=onboarding user=postgres password={infra.demo_password}"
    ) as conn:
        return conn.execute(sql_text).fetchall()  # type: ignore[arg-type]


def restored_to(policy: BackupPolicy, **point: str) -> Restore:
    restore = restore_draft_start(policy=policy, actor=None)
    assert restore_point_in_time_set(restore=restore, actor=None, **point) == []  # type: ignore[arg-type]
    restore_preflight_run(restore=restore, actor=None)
    done = run(restore_request(restore=restore, actor=None))
    assert done.status == "ready", done.error
    return done


def test_restores_to_a_restore_point_and_to_a_transaction_id_are_exact(
    physical_policy: BackupPolicy, infra: Infrastructure
) -> None:
    backup_now(physical_policy)
    sql(infra, "DROP TABLE IF EXISTS pitr_steps")
    sql(infra, "CREATE TABLE pitr_steps (id int PRIMARY KEY)")
    sql(infra, "INSERT INTO pitr_steps VALUES (1), (2)")
    cluster_probe(physical_policy.cluster)  # the primary as the checks see it: a restore point goes there
    restore_point_create(cluster=physical_policy.cluster, name="before-step-3", actor=None, source="cli")
    sql(infra, "INSERT INTO pitr_steps VALUES (3)")
    with psycopg.connect(infra.primary.conninfo("onboarding")) as conn:  # one transaction: its id is the point
        conn.execute("INSERT INTO pitr_steps VALUES (4)")
        xid = conn.execute("SELECT txid_current()").fetchone()[0]
    sql(infra, "INSERT INTO pitr_steps VALUES (5)")
    archived_past(infra, datetime.now(UTC))

    at_name = restored_to(physical_policy, target_type="name", value="before-step-3")
    assert scratch_rows(at_name, infra, "SELECT id FROM pitr_steps ORDER BY id") == [(1,), (2,)]
    scratch_discard(restore=at_name, actor=None, confirm=str(at_name.pk))

    at_xid = restored_to(physical_policy, target_type="xid", value=str(xid))
    assert scratch_rows(at_xid, infra, "SELECT id FROM pitr_steps ORDER BY id") == [(1,), (2,), (3,), (4,)]
    scratch_discard(restore=at_xid, actor=None, confirm=str(at_xid.pk))
