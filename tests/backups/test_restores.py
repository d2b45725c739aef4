"""Restores against the real primary: into a new database, replacing one, refusals, failures and clean-up."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from hadr_portal.backups import services, wizard
from hadr_portal.backups.models import Backup, Restore
from hadr_portal.backups.retention import backups_in_use
from hadr_portal.core.models import AuditEntry, Operation
from hadr_portal.core.operation_kinds import OperationConflict, OperationError
from hadr_portal.core.operations import operations_reap
from hadr_portal.core.permissions import Role
from tests.backups.conftest import APP_DB, app_sql, backup_of, data_dump, databases, run
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def prepared(policy, backup, *, destination="new_database", database="", actor=None, situation="corruption", **more):
    """A draft restore through the wizard's steps, pre-flight run; (restore, findings)."""
    restore = wizard.restore_draft_start(policy=policy, actor=actor)
    assert wizard.restore_situation_set(restore=restore, actor=actor, situation=situation) == []
    assert wizard.restore_backup_set(restore=restore, actor=actor, backup_id=str(backup.pk)) == []
    errors = wizard.restore_destination_set(
        restore=restore, actor=actor, destination=destination, database=database, **more
    )
    assert errors == [], errors
    findings = wizard.restore_preflight_run(restore=restore, actor=actor)
    return restore, findings


def titles(findings, level=None):
    return [f.title for f in findings if level is None or f.level == level]


def test_restore_into_a_new_database_is_verified_and_measured(app_policy, infra):
    dba = make_user("dba", Role.DBA)
    backup = backup_of(app_policy)
    before = data_dump(infra)
    restore, findings = prepared(app_policy, backup, database="restore_app_copy", actor=dba)
    assert titles(findings, "blocker") == []
    assert any(title.startswith("Checksum re-read and compared") for title in titles(findings, "ok"))
    assert "Database restore_app_copy does not exist yet: it will be created." in titles(findings)

    operation = wizard.restore_request(restore=restore, actor=dba, address="10.0.0.9")
    assert (operation.kind, operation.target) == ("restore", "database:demo/restore_app_copy")
    assert backup.pk in backups_in_use()
    restore = run(operation)
    operation.refresh_from_db()
    assert operation.status == "succeeded", operation.error
    assert restore.status == "verified" and restore.rto_seconds > 0 and restore.data_loss_seconds >= 0
    assert data_dump(infra, "restore_app_copy") == before
    checks = {item["name"]: item for item in restore.verification}
    assert set(checks) == {"users", "events", "events fresh", "amcheck"} and all(c["ok"] for c in checks.values())
    assert "B-tree indexes checked: no corruption" in checks["amcheck"]["detail"]
    assert Backup.objects.get(pk=backup.pk).verified_at == restore.verified_at
    assert databases(infra) == {APP_DB, "restore_app_copy"}  # production untouched, nothing else left
    assert AuditEntry.objects.filter(action="operation.restore", actor=dba, outcome="accepted").exists()
    assert backup.pk not in backups_in_use()


def test_replace_swaps_in_only_a_verified_copy_and_keeps_the_old_database(app_policy, infra):
    dba = make_user("dba", Role.DBA)
    before = data_dump(infra)
    backup = backup_of(app_policy)
    app_sql(
        infra, "DELETE FROM onboarding_events WHERE id % 3 = 0; UPDATE app_users SET email = 'x' || id WHERE id < 5"
    )
    damaged = data_dump(infra)
    assert damaged != before
    # the replace needs the database's name typed
    restore = wizard.restore_draft_start(policy=app_policy, actor=dba)
    errors = wizard.restore_destination_set(restore=restore, actor=dba, destination="replace", confirm="wrong")
    assert errors == [f"Type the database's name, {APP_DB}, to replace it."]
    restore.delete()

    restore, findings = prepared(app_policy, backup, destination="replace", actor=dba, confirm=APP_DB)
    assert titles(findings, "blocker") == []
    assert any("safety backup" in title for title in titles(findings))
    restore = run(wizard.restore_request(restore=restore, actor=dba))
    assert restore.status == "verified", restore.error
    assert data_dump(infra) == before  # the data as it was when backed up
    kept = f"{APP_DB}__before_restore_{restore.pk}"
    assert restore.kept_database == kept and data_dump(infra, kept) == damaged
    assert databases(infra) == {APP_DB, kept}
    safety = restore.safety_backup
    assert safety.kind == "safety" and safety.status == "good" and safety.size > 0
    log = "\n".join(line.message for line in restore.operation.log_lines.all())
    assert log.index("Safety backup") < log.index("✔ users") < log.index("Swapping")

    with pytest.raises(OperationError, match="Type the kept database's name"):
        services.restore_drop_kept(restore=restore, actor=dba, confirm=APP_DB)
    with pytest.raises(PermissionDenied):
        services.restore_drop_kept(restore=restore, actor=make_user("dev", Role.DEVOPS), confirm=kept)
    services.restore_drop_kept(restore=restore, actor=dba, confirm=kept)
    assert databases(infra) == {APP_DB}
    assert AuditEntry.objects.filter(action="restore.drop_kept", outcome="success", actor=dba).exists()


def test_a_corrupted_or_truncated_backup_is_refused_before_anything_is_touched(app_policy, infra, backup_dir):
    backup = backup_of(app_policy)
    path = backup_dir / backup.key
    restore, findings = prepared(app_policy, backup, database="restore_app_copy")
    assert titles(findings, "blocker") == []
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, same size
    path.write_bytes(bytes(data))

    again = wizard.restore_preflight_run(restore=restore, actor=None)
    assert titles(again, "blocker") == ["Checksum mismatch: the stored backup is corrupted. Choose another backup."]
    with pytest.raises(OperationError, match="Checksum mismatch"):
        wizard.restore_request(restore=restore, actor=None)

    # queued before the damage (pre-flight passed): the operation checks the bytes itself while reading them
    restore.preflight = [finding.as_data() for finding in findings]
    restore.save(update_fields=["preflight"])
    restore = run(wizard.restore_request(restore=restore, actor=None))
    assert restore.status == "failed" and "SHA-256" in restore.error and "corrupted" in restore.error
    assert databases(infra) == {APP_DB}

    path.write_bytes(bytes(data[:1000]))
    _, findings = prepared(app_policy, backup, database="restore_app_other")
    assert titles(findings, "blocker") == ["The stored backup is truncated or replaced: choose another backup."]
    assert databases(infra) == {APP_DB}


def test_refusals_existing_database_older_server_busy_target(app_policy, infra):
    backup = backup_of(app_policy)
    _, findings = prepared(app_policy, backup, database=APP_DB + "_x")
    app_sql(infra, f"CREATE DATABASE {APP_DB}_taken", "postgres")
    _, findings = prepared(app_policy, backup, database=APP_DB + "_taken")
    assert f"Database {APP_DB}_taken already exists on 127.0.0.1:{infra.primary.port}." in titles(findings, "blocker")

    Backup.objects.filter(pk=backup.pk).update(server_version="99.1")
    _, findings = prepared(app_policy, Backup.objects.get(pk=backup.pk), database=APP_DB + "_new")
    assert "Server version 15 is older than the backup's (99)." in titles(findings, "blocker")
    Backup.objects.filter(pk=backup.pk).update(server_version="15.1")

    first, _ = prepared(app_policy, backup, database=APP_DB + "_same")
    second, _ = prepared(app_policy, backup, database=APP_DB + "_same")
    wizard.restore_request(restore=first, actor=None)
    with pytest.raises(OperationConflict):
        wizard.restore_request(restore=second, actor=None)  # the database's unique index decides
    second.refresh_from_db()
    assert second.status == "draft"
    findings = wizard.restore_preflight_run(restore=second, actor=None)
    assert any(title.startswith("Another operation on database:demo/restore_app_same") for title in titles(findings))


def test_only_a_dba_may_restore(app_policy):
    backup = backup_of(app_policy)
    restore, _ = prepared(app_policy, backup, database="restore_app_copy")
    for role in (Role.DEVOPS, Role.DEVELOPER, Role.VIEWER, Role.PRODUCT_MANAGER):
        with pytest.raises(PermissionDenied):
            wizard.restore_request(restore=restore, actor=make_user(f"u-{role.name}", role))
        with pytest.raises(PermissionDenied):
            wizard.restore_draft_start(policy=app_policy, actor=make_user(f"v-{role.name}", role))
    assert not Operation.objects.filter(kind="restore").exists()


def test_a_restore_whose_worker_died_is_failed_by_the_reaper_and_its_copy_dropped(app_policy, infra):
    backup = backup_of(app_policy)
    restore, _ = prepared(app_policy, backup, destination="replace", confirm=APP_DB)
    operation = wizard.restore_request(restore=restore, actor=None)
    # what a worker killed in the middle of pg_restore leaves: a half-restored working copy, a stale heartbeat
    work = restore.planned_work_database
    app_sql(infra, f'CREATE DATABASE "{work}"', "postgres")
    Restore.objects.filter(pk=restore.pk).update(status="running", work_database=work, work_created=True)
    Operation.objects.filter(pk=operation.pk).update(
        status="running", heartbeat_at=timezone.now() - timedelta(minutes=5)
    )
    assert operations_reap() == [operation.pk]
    restore.refresh_from_db()
    assert restore.status == "failed" and "Worker lost" in restore.error
    assert databases(infra) == {APP_DB}  # the copy dropped, production as it was
    assert any("production was not touched" in line.message for line in operation.log_lines.all())


def test_cancelled_before_the_swap_leaves_production_as_it_was(app_policy, infra):
    backup = backup_of(app_policy)
    before = data_dump(infra)
    restore, _ = prepared(app_policy, backup, destination="replace", confirm=APP_DB)
    operation = wizard.restore_request(restore=restore, actor=None)
    Operation.objects.filter(pk=operation.pk).update(cancel_requested=True)
    restore = run(operation)
    assert restore.status == "cancelled"
    assert databases(infra) == {APP_DB} and data_dump(infra) == before


def test_a_failing_verification_fails_the_restore_and_drops_the_copy(app_policy, infra):
    app_policy.verify = [{"name": "many users", "sql": "SELECT count(*) FROM app_users", "expect": "> 1000"}]
    app_policy.save()
    backup = backup_of(app_policy)
    restore, _ = prepared(app_policy, backup, destination="replace", confirm=APP_DB)
    restore = run(wizard.restore_request(restore=restore, actor=None))
    assert restore.status == "failed" and restore.error == "Verification failed: many users"
    assert restore.verification[0] == {"name": "many users", "ok": False, "detail": "20 (expected > 1000)"}
    assert databases(infra) == {APP_DB} and restore.swapped_at is None


@pytest.mark.parametrize("engine", ["pg_dump_dir"])
def test_a_directory_format_backup_restores_too(app_policy, infra, engine, scratch_dir):
    app_policy.engine = engine
    app_policy.save()
    before = data_dump(infra)
    restore, _ = prepared(app_policy, backup_of(app_policy), database="restore_app_dir")
    restore = run(wizard.restore_request(restore=restore, actor=None))
    assert restore.status == "verified", restore.error
    assert data_dump(infra, "restore_app_dir") == before
    assert list(scratch_dir.iterdir()) == []  # the unpacked dump is gone


def test_a_backup_in_s3_is_downloaded_checked_and_restored(app_policy, infra, scratch_dir, s3_storage):
    app_policy.storage = s3_storage[0]
    app_policy.save()
    before = data_dump(infra)
    backup = backup_of(app_policy)
    restore, findings = prepared(app_policy, backup, database="restore_app_s3")
    assert titles(findings, "blocker") == []
    assert any(title.startswith("Free disk on the download directory") for title in titles(findings))
    restore = run(wizard.restore_request(restore=restore, actor=None))
    assert restore.status == "verified", restore.error
    assert data_dump(infra, "restore_app_s3") == before
    assert any(line.message.startswith("Downloading") for line in restore.operation.log_lines.all())
    assert list(scratch_dir.iterdir()) == []  # the download is removed


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)  # a real worker reads what the test wrote
def test_a_worker_killed_mid_restore_leaves_production_untouched(
    app_policy, infra, start_worker, monkeypatch, scratch_dir
):
    """A real `ops` worker SIGKILLed while pg_restore runs: the reaper fails the restore, its copy is dropped."""
    app_sql(
        infra,
        "CREATE TABLE bulk AS SELECT g AS id, md5(g::text) || repeat('x', 200) AS filler FROM generate_series(1, 400000) g;"
        " CREATE INDEX ON bulk (filler)",
    )
    monkeypatch.setenv("HADR_RESTORE_SCRATCH_DIR", str(scratch_dir))
    before = data_dump(infra)
    backup = backup_of(app_policy)
    restore, _ = prepared(app_policy, backup, destination="replace", confirm=APP_DB)
    worker = start_worker("ops")
    operation = wizard.restore_request(restore=restore, actor=None)
    work = restore.planned_work_database

    def restoring() -> bool:
        restore.refresh_from_db()
        return restore.work_created and work in databases(infra) and restore.restored_at is None

    from tests.conftest import wait_for

    wait_for(restoring, timeout=60, interval=0.05, message="the restore never started pg_restore")
    worker.kill()
    wait_for(lambda: operations_reap() or Operation.objects.get(pk=operation.pk).status == "failed", timeout=30)
    restore.refresh_from_db()
    assert restore.status == "failed" and "Worker lost" in restore.error
    wait_for(lambda: databases(infra) == {APP_DB}, timeout=30, message=f"left: {databases(infra)}")
    assert data_dump(infra) == before
