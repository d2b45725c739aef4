"""Backups against the real demo primary, local storage and S3 over HTTP (moto's server)."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from hadr_portal.adapters.pg.backup import pg_restore_list
from hadr_portal.backups import retention, services
from hadr_portal.backups.models import Backup, BackupPolicy, StorageTarget
from hadr_portal.core.models import AuditEntry, Operation
from hadr_portal.core.operation_kinds import OperationConflict
from hadr_portal.core.operations import operation_execute, operations_reap
from hadr_portal.core.permissions import Role
from tests.conftest import make_user


@pytest.fixture
def backup_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="hadr-backups-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def policy(demo_cluster, backup_dir) -> BackupPolicy:
    storage = StorageTarget.objects.create(name="local", kind="local", config={"path": str(backup_dir)})
    return BackupPolicy.objects.create(
        name="demo-onboarding", cluster=demo_cluster, dbname="onboarding", storage=storage
    )


def make_backup(policy: BackupPolicy, *, key: str, kind: str = "scheduled", size: int = 1, **fields) -> Backup:
    """A good backup record (no bytes behind it: for retention, freshness and permission tests)."""
    return Backup.objects.create(
        policy=policy,
        kind=kind,
        engine="pg_dump",
        storage=policy.storage,
        key=key,
        status="good",
        size=size,
        sha256="a" * 64,
        **fields,
    )


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_backup(policy: BackupPolicy, actor=None, kind: str = "manual") -> tuple[Operation, Backup | None]:
    operation = services.backup_request(policy=policy, actor=actor, kind=kind)
    operation = operation_execute(operation_id=operation.pk)
    return operation, Backup.objects.filter(operation=operation).first()


def test_backup_is_streamed_verified_and_marked_good(policy, backup_dir, infra):
    infra.primary.psql(
        "CREATE TABLE IF NOT EXISTS backup_probe (id int); INSERT INTO backup_probe VALUES (42)", dbname="onboarding"
    )
    operation, backup = run_backup(policy, actor=make_user("dba", Role.DBA))
    assert operation.status == "succeeded", operation.error
    assert backup.status == "good" and backup.size > 0
    stored = backup_dir / backup.key
    assert sha256_of(stored) == backup.sha256
    manifest = json.loads((backup_dir / (backup.key + ".manifest.json")).read_text())
    assert (manifest["sha256"], manifest["size"], manifest["database"]) == (backup.sha256, backup.size, "onboarding")
    assert manifest["server_version"].startswith("15")
    assert any("backup_probe" in line for line in pg_restore_list(stored))
    log = [line.message for line in operation.log_lines.all()]
    assert any(line.startswith("Verified") for line in log)
    assert not list(backup_dir.rglob("*.partial"))


def test_unknown_database_fails_clearly_and_leaves_nothing(policy, backup_dir):
    BackupPolicy.objects.filter(pk=policy.pk).update(dbname="nope")
    policy.refresh_from_db()
    operation, backup = run_backup(policy)
    assert operation.status == "failed"
    assert "does not exist" in operation.error
    assert backup.status == "failed" and backup.error
    assert [p for p in backup_dir.rglob("*") if p.is_file()] == []


def test_two_clicks_make_one_backup(policy):
    dba = make_user("dba", Role.DBA)
    services.backup_request(policy=policy, actor=dba)
    with pytest.raises(OperationConflict):
        services.backup_request(policy=policy, actor=dba)
    assert Operation.objects.filter(kind="backup").count() == 1


def test_a_viewer_cannot_start_or_download(client_as, policy, backup_dir):
    viewer = client_as(Role.VIEWER)
    assert viewer.post(reverse("backups:backup-now", kwargs={"name": policy.name})).status_code == 403
    backup = make_backup(policy, key="x.dump", kind="manual", size=1)
    assert viewer.get(reverse("backups:download", kwargs={"pk": backup.pk})).status_code == 403
    assert not Operation.objects.exists()


def test_dba_downloads_the_exact_bytes_and_it_is_audited(client_as, policy):
    _, backup = run_backup(policy)
    dba = client_as(Role.DBA)
    response = dba.get(reverse("backups:download", kwargs={"pk": backup.pk}))
    assert response.status_code == 200 and response.streaming
    body = b"".join(response.streaming_content)
    assert hashlib.sha256(body).hexdigest() == backup.sha256 == response["X-Backup-SHA256"]
    assert AuditEntry.objects.filter(action="backup.download", actor=dba.user).exists()


def test_killed_backup_is_reaped_and_its_partial_object_removed(policy, backup_dir):
    operation = Operation.objects.create(
        kind="backup",
        target=policy.target,
        status="running",
        heartbeat_at=timezone.now() - timedelta(minutes=10),
        parameters={"policy": policy.name},
    )
    key = "demo-onboarding/killed.dump"
    (backup_dir / "demo-onboarding").mkdir(parents=True)
    (backup_dir / key).write_bytes(b"half a dump")
    backup = Backup.objects.create(
        policy=policy, kind="manual", engine="pg_dump", storage=policy.storage, key=key, operation=operation
    )
    assert operations_reap() == [operation.pk]
    backup.refresh_from_db()
    assert backup.status == "failed" and "Worker lost" in backup.error
    assert not (backup_dir / key).exists()
    assert not Backup.objects.filter(status="good").exists()


def test_retention_age_rules_newest_and_pinned(policy):
    now = timezone.now()

    def make(days: float, kind: str = "scheduled", pinned: bool = False) -> Backup:
        return make_backup(
            policy,
            key=f"k{days}{kind}",
            kind=kind,
            size=1,
            pinned=pinned,
            started_at=now - timedelta(days=days),
        )

    newest_old = make(40)  # the only... no: newer ones follow
    fresh = make(1)
    old_scheduled = make(8)
    old_pinned = make(9, pinned=True)
    recent_manual = make(20, kind="manual")
    old_manual = make(31, kind="manual")
    plan = {d.backup.pk: d for d in retention.retention_plan(policy, now=now)}
    assert not plan[fresh.pk].delete and "newest" in plan[fresh.pk].reason
    assert plan[old_scheduled.pk].delete and "kept 7 days" in plan[old_scheduled.pk].reason
    assert not plan[old_pinned.pk].delete and plan[old_pinned.pk].reason == "pinned"
    assert not plan[recent_manual.pk].delete
    assert plan[old_manual.pk].delete and "kept 30 days" in plan[old_manual.pk].reason
    assert plan[newest_old.pk].delete
    # a dry run deletes nothing; a real run deletes exactly the planned ones
    assert {d.backup.pk for d in services.backups_prune(policy=policy, dry_run=True)} == {
        old_scheduled.pk,
        old_manual.pk,
        newest_old.pk,
    }
    assert Backup.objects.filter(status="deleted").count() == 0
    services.backups_prune(policy=policy, dry_run=False)
    assert set(Backup.objects.filter(status="deleted").values_list("pk", flat=True)) == {
        old_scheduled.pk,
        old_manual.pk,
        newest_old.pk,
    }


def test_retention_never_deletes_the_only_good_backup(policy):
    only = make_backup(
        policy,
        key="k",
        kind="scheduled",
        size=1,
        started_at=timezone.now() - timedelta(days=365),
    )
    assert services.backups_prune(policy=policy, dry_run=False) == []
    only.refresh_from_db()
    assert only.status == "good"


def test_calendar_retention_keeps_the_newest_of_each_day_week_month(policy):
    BackupPolicy.objects.filter(pk=policy.pk).update(retention="calendar", keep_daily=3, keep_weekly=2, keep_monthly=2)
    policy.refresh_from_db()
    now = timezone.now().replace(hour=12)
    made = {}
    for days in range(0, 70):
        for hour in (2, 14):
            when = now - timedelta(days=days) + timedelta(hours=hour - 12)
            made[(days, hour)] = make_backup(policy, key=f"{days}-{hour}", kind="scheduled", size=1, started_at=when)
    plan = retention.retention_plan(policy, now=now)
    kept = [d for d in plan if not d.delete]
    assert len(kept) <= 3 + 2 + 2 + 1
    assert made[(0, 14)].pk in {d.backup.pk for d in kept} or made[(0, 2)].pk in {d.backup.pk for d in kept}
    assert all(d.delete for d in plan if (timezone.now() - d.backup.started_at).days > 65)


def test_scheduled_backups_are_queued_when_due(policy):
    BackupPolicy.objects.filter(pk=policy.pk).update(
        next_run_at=timezone.now() - timedelta(minutes=1), schedule="*/5 * * * *"
    )
    [operation] = services.backups_schedule_due()
    assert operation.parameters["kind"] == "scheduled" and operation.requested_by is None
    policy.refresh_from_db()
    assert policy.next_run_at > timezone.now()
    assert services.backups_schedule_due() == []


def test_freshness_check_goes_amber_then_red(policy):
    from hadr_portal.backups.selectors import freshness_of

    assert freshness_of(policy).state == "down"
    make_backup(
        policy,
        key="k",
        kind="scheduled",
        size=1,
        started_at=timezone.now() - timedelta(hours=1),
    )
    assert freshness_of(policy).state == "up"
    BackupPolicy.objects.filter(pk=policy.pk).update(rpo_minutes=30)
    policy.refresh_from_db()
    assert freshness_of(policy).state == "degraded"
    assert freshness_of(policy, now=timezone.now() + timedelta(days=2)).state == "down"


def test_cli_lists_and_prunes(policy, capsys):
    make_backup(policy, key="k1", kind="scheduled", size=10)
    call_command("backups", "--json")
    document = json.loads(capsys.readouterr().out)
    assert document["backups"][0]["key"] == "k1" and document["policies"]["demo-onboarding"]["state"] == "up"
    call_command("prune_backups", "--dry-run")
    assert "0 backup(s) would be deleted." in capsys.readouterr().out


def test_backup_to_s3_over_http(demo_cluster, s3_storage):
    storage, s3 = s3_storage
    policy = BackupPolicy.objects.create(name="demo-s3", cluster=demo_cluster, dbname="onboarding", storage=storage)
    operation, backup = run_backup(policy)
    assert operation.status == "succeeded", operation.error
    body = s3.get_object(Bucket="backups", Key=f"hadr/{backup.key}")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == backup.sha256 and len(body) == backup.size
    manifest = json.loads(s3.get_object(Bucket="backups", Key=f"hadr/{backup.key}.manifest.json")["Body"].read())
    assert manifest["sha256"] == backup.sha256


def test_a_downloaded_backup_is_read_by_plain_pg_restore(client_as, policy, tmp_path, infra):
    """The runbook `restore-by-hand` starts with `pg_restore --list` on a downloaded file."""
    infra.primary.psql("CREATE TABLE IF NOT EXISTS backup_probe (id int)", dbname="onboarding")
    _, backup = run_backup(policy)
    body = b"".join(client_as(Role.DBA).get(reverse("backups:download", kwargs={"pk": backup.pk})).streaming_content)
    downloaded = tmp_path / "downloaded.dump"
    downloaded.write_bytes(body)
    toc = pg_restore_list(downloaded)
    assert any("TABLE public backup_probe" in line for line in toc), toc
    runbook = (Path(__file__).resolve().parents[2] / "runbooks" / "restore-by-hand.md").read_text()
    assert "pg_restore --list" in runbook and "sha256sum" in runbook


def test_backup_command_if_missing_is_idempotent(policy, capsys):
    call_command("backup", policy.name, "--if-missing")
    call_command("backup", policy.name, "--if-missing")  # the first is still queued: no error, no second one
    assert Operation.objects.filter(kind="backup").count() == 1
    make_backup(policy, key="k")
    call_command("backup", policy.name, "--if-missing")
    assert "already has a good backup" in capsys.readouterr().out
    assert Operation.objects.filter(kind="backup").count() == 1


def test_missing_bucket_and_wrong_password_fail_clearly_and_mark_nothing_good(demo_cluster, monkeypatch):
    from moto.server import ThreadedMotoServer

    from tests.infra.plugin import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        monkeypatch.setenv("TEST_S3_KEY", "testing")
        monkeypatch.setenv("TEST_S3_SECRET", "testing")
        storage = StorageTarget.objects.create(
            name="nobucket",
            kind="s3",
            config={
                "bucket": "does-not-exist",
                "endpoint_url": f"http://127.0.0.1:{port}",
                "region": "us-east-1",
                "access_key_env": "TEST_S3_KEY",
                "secret_key_env": "TEST_S3_SECRET",
            },
        )
        policy = BackupPolicy.objects.create(
            name="no-bucket", cluster=demo_cluster, dbname="onboarding", storage=storage
        )
        operation, backup = run_backup(policy)
        assert operation.status == "failed" and "does-not-exist" in operation.error
        assert backup.status == "failed"
    finally:
        server.stop()

    monkeypatch.setenv("HADR_DEMO_BACKUP_PASSWORD", "wrong")  # backups connect as the backup role
    local = StorageTarget.objects.create(name="tmp", kind="local", config={"path": tempfile.mkdtemp(prefix="hadr-pw-")})
    policy = BackupPolicy.objects.create(name="bad-password", cluster=demo_cluster, dbname="onboarding", storage=local)
    operation, backup = run_backup(policy)
    assert operation.status == "failed" and "password" in operation.error.lower()
    assert not Backup.objects.filter(status="good").exists()
    shutil.rmtree(local.config["path"], ignore_errors=True)
