"""Crashes in the middle of physical backups and point-in-time restores, on a real ops worker: the worker SIGKILLs
itself at a kill point (HADR_TEST_KILL_POINTS, core.killpoints) or pgBackRest is killed -9. The operation ends
failed within two minutes, no partial set is shown as good, the scratch instance is gone, and a rerun works."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

import psutil
import pytest
from django.utils import timezone

from hadr_portal.adapters.pg.scratch import port_in_use
from hadr_portal.adapters.pgbackrest import info
from hadr_portal.backups import services
from hadr_portal.backups.models import Backup, BackupPolicy, Restore
from hadr_portal.backups.pitr import restore_point_in_time_set
from hadr_portal.backups.stanza import stanza_for
from hadr_portal.backups.wizard import restore_draft_start, restore_preflight_run, restore_request
from hadr_portal.core.models import Operation
from hadr_portal.core.operations import operation_execute, operations_reap
from tests.backups.conftest import backup_now

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def pgbackrest_processes(command: str, policy: BackupPolicy) -> list[psutil.Process]:
    """This test's pgbackrest processes running `command` (never another test's or a benchmark's)."""
    config = f"--config={stanza_for(policy).config_path}"
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        if process.info["name"] == "pgbackrest" and command in cmdline and config in cmdline:
            found.append(process)
    return found


def wait_for(predicate, timeout: float = 60, interval: float = 0.1):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(interval)
    raise AssertionError("timed out waiting")


def reaped(operation: Operation, started: float) -> Operation:
    """Reap as beat would, until the lost operation ends; within the issue's two minutes."""

    def ended() -> Operation | None:
        operations_reap(now=timezone.now())
        operation.refresh_from_db()
        return operation if operation.status != "running" else None

    done = wait_for(ended, timeout=120, interval=0.5)
    assert time.monotonic() - started < 120
    return done


def test_worker_killed_right_after_pgbackrest_started_a_backup(physical_policy: BackupPolicy, start_worker) -> None:
    backup_now(physical_policy)  # a full set exists: the crashed one is an incremental
    before = {item.label for item in info(stanza_for(physical_policy)).sets(1)}
    worker = start_worker("ops", env={"HADR_TEST_KILL_POINTS": "backup.pgbackrest-started"})
    started = time.monotonic()
    operation = services.backup_request(policy=physical_policy, actor=None, set_type="incr")
    wait_for(lambda: worker.process.poll() is not None or Operation.objects.get(pk=operation.pk).status == "running")
    operation = reaped(operation, started)
    assert operation.status == "failed" and "Worker lost" in operation.error
    crashed = Backup.objects.get(operation=operation)
    assert crashed.status == "failed"  # never good, whatever pgBackRest made of it
    wait_for(lambda: not pgbackrest_processes("backup", physical_policy), timeout=30)  # the reaper stopped its session
    again = backup_now(physical_policy, "incr")  # pgBackRest's lock is free, a rerun works
    assert again.status == "good"
    assert again.key in {item.label for item in info(stanza_for(physical_policy)).sets(1)} - before


def test_pgbackrest_killed_mid_backup_fails_the_operation(physical_policy: BackupPolicy) -> None:
    backup_now(physical_policy)
    before = {item.label for item in info(stanza_for(physical_policy)).sets(1)}
    operation = services.backup_request(policy=physical_policy, actor=None, set_type="full")
    outcome: list[Operation | None] = []
    runner = threading.Thread(target=lambda: outcome.append(operation_execute(operation_id=operation.pk)))
    runner.start()
    victims = wait_for(lambda: pgbackrest_processes("backup", physical_policy), timeout=60, interval=0.02)
    for victim in victims:
        victim.kill()
    runner.join(120)
    done = Operation.objects.get(pk=operation.pk)
    assert done.status == "failed" and "signal 9" in done.error
    assert Backup.objects.get(operation=operation).status == "failed"
    assert {item.label for item in info(stanza_for(physical_policy)).sets(1)} == before  # nothing partial listed
    assert backup_now(physical_policy).status == "good"


@pytest.mark.parametrize("point", ["restore.pgbackrest-started", "restore.instance-started"])
def test_worker_killed_mid_restore_leaves_no_scratch_instance(
    physical_policy: BackupPolicy, start_worker, point: str
) -> None:
    backup_now(physical_policy)
    worker = start_worker("ops", env={"HADR_TEST_KILL_POINTS": point})
    restore = restore_draft_start(policy=physical_policy, actor=None)
    assert restore_point_in_time_set(restore=restore, actor=None, target_type="immediate") == []
    restore_preflight_run(restore=restore, actor=None)
    started = time.monotonic()
    operation = restore_request(restore=restore, actor=None)
    # the pool process dies at the kill point (Celery starts another; the operation stays "running", its heartbeat
    # stale): pgBackRest's session was recorded before it, the instance started before the second one
    if point == "restore.instance-started":
        wait_for(lambda: port_in_use(restore.port), timeout=90)
        assert worker.process.poll() is None  # the worker itself lives on; its lost task is the reaper's
    else:
        wait_for(lambda: Restore.objects.get(pk=restore.pk).session, timeout=90)
    operation = reaped(operation, started)
    restore.refresh_from_db()
    assert operation.status == "failed" and restore.status == "failed"
    assert not Path(restore.data_directory).exists() and not port_in_use(restore.port)  # …until the reaper ends it
    assert not pgbackrest_processes("restore", physical_policy)

    worker.stop()  # the rerun runs here, not on the worker that still has the kill point armed
    again = restore_draft_start(policy=physical_policy, actor=None)
    assert restore_point_in_time_set(restore=again, actor=None, target_type="immediate") == []
    restore_preflight_run(restore=again, actor=None)
    operation_execute(operation_id=restore_request(restore=again, actor=None).pk)
    again.refresh_from_db()
    assert again.status == "ready", again.error
    from hadr_portal.backups.scratch import scratch_discard

    scratch_discard(restore=again, actor=None, confirm=str(again.pk))
    assert Restore.objects.filter(scratch_removed_at=None, work_created=True).count() == 0
    assert timezone.now() - restore.created_at < timedelta(minutes=5)
