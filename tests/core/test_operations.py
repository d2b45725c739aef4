"""The operation mechanism against the real portal database and the real demo cluster."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from hadr_portal.core import registry
from hadr_portal.core.models import AuditEntry, Operation
from hadr_portal.core.operation_kinds import OperationConflict, OperationError, OperationKind
from hadr_portal.core.operations import (
    operation_cancel,
    operation_execute,
    operation_request,
    operations_reap,
)
from hadr_portal.core.permissions import Action, Role
from hadr_portal.databases.services import cluster_upsert, connectivity_check_request
from tests.conftest import make_user

CLEANED: list[int] = []


def _slow_cleanup(operation: Operation) -> None:
    CLEANED.append(operation.pk)


registry.operation_kinds.register(
    OperationKind(
        name="test_cleanup_kind", label="Test kind", action=Action.RUN_BACKUP, run=lambda ctx: {}, cleanup=_slow_cleanup
    )
)


def test_request_creates_operation_with_its_audit_entry(demo_cluster):
    dba = make_user("dba", Role.DBA)
    operation = connectivity_check_request(cluster=demo_cluster, actor=dba, address="10.0.0.7", sample_seconds="5")
    assert operation.status == Operation.Status.QUEUED
    assert operation.parameters == {"cluster": "demo", "sample_seconds": 5}
    entry = AuditEntry.objects.get(operation=operation)
    assert (entry.actor_name, entry.actor_roles, entry.address) == ("dba", ["DBA"], "10.0.0.7")
    assert (entry.action, entry.target, entry.outcome) == ("operation.connectivity_check", "cluster:demo", "accepted")


def test_second_request_on_same_target_is_refused_and_audited(demo_cluster):
    devops = make_user("ops", Role.DEVOPS)
    first = connectivity_check_request(cluster=demo_cluster, actor=devops)
    with pytest.raises(OperationConflict, match=rf"already in progress \(#{first.pk}, queued\)"):
        connectivity_check_request(cluster=demo_cluster, actor=devops)
    assert Operation.objects.count() == 1
    assert AuditEntry.objects.filter(outcome="refused", target="cluster:demo").count() == 1


def test_viewer_request_is_refused_and_audited(demo_cluster):
    viewer = make_user("v", Role.VIEWER)
    with pytest.raises(PermissionDenied):
        connectivity_check_request(cluster=demo_cluster, actor=viewer)
    assert not Operation.objects.exists()
    assert AuditEntry.objects.get().outcome == "refused"


@pytest.mark.parametrize("seconds", ["abc", "-1", "601"])
def test_bad_sampling_time_is_refused_with_a_reason(demo_cluster, seconds):
    with pytest.raises(OperationError, match="Sampling time"):
        connectivity_check_request(cluster=demo_cluster, actor=make_user("d", Role.DBA), sample_seconds=seconds)


def test_database_constraint_not_python_enforces_one_active_operation(demo_cluster):
    Operation.objects.create(kind="connectivity_check", target="cluster:demo")
    with pytest.raises(DatabaseError, match="one_active_operation_per_target"), transaction.atomic():
        Operation.objects.create(kind="connectivity_check", target="cluster:demo", status="running")
    # finished ones do not count
    Operation.objects.update(status="succeeded")
    Operation.objects.create(kind="connectivity_check", target="cluster:demo")


@pytest.mark.redis  # committed at once, so queued on the real broker
@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_for_one_target_yield_one_operation(demo_cluster):
    user = make_user("twin", Role.DBA)
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def request() -> None:
        try:
            barrier.wait()
            connectivity_check_request(cluster=demo_cluster, actor=user)
            outcomes.append("created")
        except OperationConflict:
            outcomes.append("conflict")
        finally:
            connection.close()

    threads = [threading.Thread(target=request) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["conflict", "conflict", "conflict", "created"]
    assert Operation.objects.filter(target="cluster:demo").count() == 1


def test_connectivity_check_reaches_primary_and_replica(demo_cluster):
    operation = connectivity_check_request(cluster=demo_cluster, actor=None)
    finished = operation_execute(operation_id=operation.pk)
    assert finished is not None and finished.status == "succeeded", finished.error
    assert finished.progress == 100
    assert finished.result["nodes"]["primary"]["role"] == "primary"
    assert finished.result["nodes"]["replica"]["role"] == "replica"
    roles = {node.name: node.role for node in demo_cluster.nodes.all()}
    assert roles == {"primary": "primary", "replica": "replica"}
    lines = [line.message for line in finished.log_lines.all()]
    assert any("primary (127.0.0.1" in line and "is primary" in line for line in lines)
    assert AuditEntry.objects.filter(
        operation=finished, action="operation.connectivity_check.finished", outcome="success"
    ).exists()


def test_a_second_delivery_of_the_task_does_nothing(demo_cluster):
    operation = connectivity_check_request(cluster=demo_cluster, actor=None)
    assert operation_execute(operation_id=operation.pk) is not None
    assert operation_execute(operation_id=operation.pk) is None
    operation.refresh_from_db()
    assert operation.attempts == 1


@pytest.mark.django_db
def test_transient_failures_are_retried_with_backoff_in_the_log(infra):
    cluster = cluster_upsert(
        name="broken",
        nodes={"primary": ("127.0.0.1", infra.primary.port), "gone": ("127.0.0.1", 1)},
        dbname="postgres",
        user="postgres",
        password_env="HADR_DEMO_PASSWORD",
    )
    operation = connectivity_check_request(cluster=cluster, actor=None)
    finished = operation_execute(operation_id=operation.pk)
    assert finished.status == "failed"
    assert "gone:" in finished.error
    log = [line.message for line in finished.log_lines.all()]
    assert any("Attempt 1 of 3 failed" in line and "Retrying in 1.0 s" in line for line in log), log
    assert any("Attempt 2 of 3 failed" in line and "Retrying in 2.0 s" in line for line in log), log
    assert finished.attempts == 3


def test_cancel_while_queued(demo_cluster):
    dba = make_user("dba", Role.DBA)
    operation = connectivity_check_request(cluster=demo_cluster, actor=dba)
    cancelled = operation_cancel(operation_id=operation.pk, actor=dba)
    assert cancelled.status == "cancelled"
    assert operation_execute(operation_id=operation.pk) is None
    with pytest.raises(OperationError, match="already cancelled"):
        operation_cancel(operation_id=operation.pk, actor=dba)
    # the target is free again
    connectivity_check_request(cluster=demo_cluster, actor=dba)


def test_viewer_cannot_cancel_someone_elses_operation(demo_cluster):
    operation = connectivity_check_request(cluster=demo_cluster, actor=make_user("dba", Role.DBA))
    with pytest.raises(PermissionDenied):
        operation_cancel(operation_id=operation.pk, actor=make_user("v", Role.VIEWER))
    operation.refresh_from_db()
    assert operation.status == "queued"


def test_reaper_fails_stale_running_operations_and_cleans_up(db):
    stale = Operation.objects.create(
        kind="test_cleanup_kind", target="x:1", status="running", heartbeat_at=timezone.now() - timedelta(minutes=5)
    )
    fresh = Operation.objects.create(
        kind="test_cleanup_kind", target="x:2", status="running", heartbeat_at=timezone.now()
    )
    assert operations_reap() == [stale.pk]
    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert stale.status == "failed" and stale.error.startswith("Worker lost")
    assert fresh.status == "running"
    assert stale.pk in CLEANED
    assert AuditEntry.objects.filter(operation=stale, outcome="failed").exists()
    assert operations_reap() == []


def test_audit_log_is_append_only_in_the_database(db):
    operation_request(kind="test_cleanup_kind", target="x:1", actor=make_user("root", superuser=True))
    entry = AuditEntry.objects.get()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).update(outcome="success")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        entry.delete()


def test_secrets_never_reach_the_audit_log(db):
    operation_request(
        kind="test_cleanup_kind",
        target="x:1",
        actor=make_user("root", superuser=True),
        parameters={"password": "hunter2", "options": {"api_token": "t0k"}, "depth": 3},
    )
    assert AuditEntry.objects.get().parameters == {
        "password": "[redacted]",
        "options": {"api_token": "[redacted]"},
        "depth": 3,
    }
