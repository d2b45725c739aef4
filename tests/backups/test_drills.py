"""Restore drills: on schedule and on demand, into a scratch copy that is dropped; failures show and alert."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from hadr_portal.backups import services, wizard
from hadr_portal.backups.models import Backup, BackupPolicy, Restore
from hadr_portal.backups.retention import backups_in_use
from hadr_portal.backups.selectors import freshness_of, recovery_proof
from hadr_portal.core.dashboard_version import dashboard_invalidate
from hadr_portal.core.models import AuditEntry
from hadr_portal.core.operation_kinds import OperationConflict, OperationError
from hadr_portal.dashboard.cache import dashboard_html
from tests.backups.conftest import APP_DB, app_sql, backup_of, data_dump, databases, run
from tests.status.factories import make_check, make_service

pytestmark = pytest.mark.django_db


def test_a_drill_restores_the_newest_backup_into_a_scratch_database_and_drops_it(app_policy, infra):
    backup_of(app_policy)
    newest = backup_of(app_policy)
    before = data_dump(infra)
    operation = wizard.drill_request(policy=app_policy, actor=None)
    assert (operation.kind, operation.target) == ("restore_drill", "restore-drill:restore-app")
    with pytest.raises(OperationConflict):
        wizard.drill_request(policy=app_policy, actor=None)
    assert Restore.objects.filter(kind="drill").count() == 1  # the refused one left nothing behind
    drill = run(operation)
    assert drill.status == "verified", drill.error
    assert drill.backup == newest and drill.work_database == f"{APP_DB}__drill_{drill.pk}"
    assert databases(infra) == {APP_DB} and data_dump(infra) == before
    assert drill.rto_seconds > 0 and drill.duration_seconds > 0
    assert Backup.objects.get(pk=newest.pk).verified_at is not None
    proof = recovery_proof(app_policy)
    assert proof.last_drill == drill and proof.last_verified == drill and len(proof.rto_points) == 1


def test_drills_are_queued_on_their_schedule(app_policy):
    backup_of(app_policy)
    assert services.drills_schedule_due() == []  # first tick: sets the next run
    app_policy.refresh_from_db()
    assert app_policy.next_drill_at > timezone.now()
    BackupPolicy.objects.filter(pk=app_policy.pk).update(next_drill_at=timezone.now() - timedelta(minutes=1))
    [operation] = services.drills_schedule_due()
    assert operation.kind == "restore_drill" and operation.requested_by is None
    assert services.drills_schedule_due() == []
    BackupPolicy.objects.filter(pk=app_policy.pk).update(drill_schedule="", next_drill_at=None)
    assert services.drills_schedule_due() == []


def test_a_drill_without_a_good_backup_is_refused_and_audited_when_scheduled(app_policy):
    with pytest.raises(OperationError, match="no good backup to drill"):
        wizard.drill_request(policy=app_policy, actor=None)
    BackupPolicy.objects.filter(pk=app_policy.pk).update(next_drill_at=timezone.now() - timedelta(minutes=1))
    assert services.drills_schedule_due() == []
    assert AuditEntry.objects.filter(action="operation.restore_drill", outcome="refused").exists()
    assert not Restore.objects.exists()


def test_a_failed_drill_turns_the_backup_check_amber_and_shows_on_the_dashboard(app_policy, infra):
    service = make_service("app-db", kind="database", tier=1)
    make_check(service, "backup", "backup", policy=app_policy, interval_seconds=60)
    backup_of(app_policy)
    drill = run(wizard.drill_request(policy=app_policy, actor=None))
    assert freshness_of(app_policy).state == "up"
    html = str(dashboard_html())
    assert "Last verified restore" in html and f'id="proof-{app_policy.name}"' in html

    app_policy.verify = [{"name": "no users", "sql": "SELECT count(*) FROM app_users", "expect": "= 0"}]
    app_policy.save()
    failed = run(wizard.drill_request(policy=app_policy, actor=None))
    assert failed.status == "failed" and failed.error == "Verification failed: no users"
    assert databases(infra) == {APP_DB}  # the scratch database is dropped all the same
    fresh = freshness_of(app_policy)
    assert fresh.state == "degraded" and "restore drill failed" in fresh.message
    dashboard_invalidate()
    html = str(dashboard_html())
    assert "Last restore drill failed: Verification failed: no users" in html
    assert recovery_proof(app_policy).last_verified == drill  # the last good proof is still shown


def test_restore_drill_command(app_policy, capsys):
    backup_of(app_policy)
    out = StringIO()
    call_command("restore_drill", "demo/" + APP_DB, stdout=out)
    drill = Restore.objects.get(kind="drill")
    assert f"Operation #{drill.operation.pk} queued: restore drill of demo/{APP_DB}." in out.getvalue()
    with pytest.raises(CommandError, match="already in progress"):
        call_command("restore_drill", app_policy.name, stdout=StringIO())
    with pytest.raises(CommandError, match="No backup policy for 'nope'"):
        call_command("restore_drill", "nope", stdout=StringIO())


def test_restore_command_refuses_replace_without_yes_and_restores_with_it(app_policy, infra):
    backup = backup_of(app_policy)
    with pytest.raises(CommandError, match="add --yes"):
        call_command("restore", str(backup.pk), "--replace", stdout=StringIO())
    app_sql(infra, f"CREATE DATABASE {APP_DB}_taken", "postgres")
    with pytest.raises(CommandError, match=f"Refused by the pre-flight: Database {APP_DB}_taken already exists"):
        # --target-database, the option's former name, still works for the scripts that use it
        call_command("restore", str(backup.pk), "--target-database", f"{APP_DB}_taken", stdout=StringIO())
    assert not Restore.objects.exists()  # a refused restore leaves no draft behind
    out = StringIO()
    call_command("restore", str(backup.pk), "--destination-database", "restore_app_cli", stdout=out)
    text = out.getvalue()
    assert "✔ Checksum re-read and compared" in text and "queued: restore #" in text
    restore = Restore.objects.get(destination_database="restore_app_cli")
    assert run(restore.operation).status == "verified"
    assert "restore_app_cli" in databases(infra)

    before = data_dump(infra)
    call_command("restore", str(backup.pk), "--replace", "--yes", stdout=StringIO())
    replaced = Restore.objects.get(destination="replace")
    assert run(replaced.operation).status == "verified" and data_dump(infra) == before


def test_drafts_never_run_are_forgotten_after_a_day(app_policy):
    backup = backup_of(app_policy)
    old = wizard.restore_draft_start(policy=app_policy, actor=None)
    fresh = wizard.restore_draft_start(policy=app_policy, actor=None)
    Restore.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=2))
    queued = run(wizard.drill_request(policy=app_policy, actor=None))
    Restore.objects.filter(pk=queued.pk).update(created_at=timezone.now() - timedelta(days=2))
    assert services.restore_drafts_prune() == 1
    assert set(Restore.objects.values_list("pk", flat=True)) == {fresh.pk, queued.pk}
    assert backup.pk in backups_in_use()  # the fresh draft holds the backup it chose
