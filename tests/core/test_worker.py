"""Operations through a real Redis and real Celery worker processes."""

from __future__ import annotations

import pytest
from django.db import close_old_connections

from hadr_portal.core.models import Operation
from hadr_portal.core.operations import operations_reap
from hadr_portal.core.permissions import Role
from hadr_portal.databases.services import connectivity_check_request
from tests.conftest import make_user, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def status_of(operation: Operation) -> str:
    close_old_connections()
    operation.refresh_from_db()
    return operation.status


def test_worker_executes_a_queued_operation_through_redis(demo_cluster, start_worker):
    start_worker("ops")
    operation = connectivity_check_request(cluster=demo_cluster, actor=make_user("dba", Role.DBA))
    wait_for(lambda: status_of(operation) == "succeeded", timeout=30, message="operation never succeeded")
    assert operation.worker.endswith(tuple("0123456789"))
    assert operation.result["nodes"]["replica"]["role"] == "replica"


def test_killed_worker_operation_is_reaped_and_the_target_is_free_again(demo_cluster, start_worker):
    """SIGKILL an ops worker mid-operation: the reaper fails it, and a new one on the same target runs."""
    victim = start_worker("ops", name="victim")
    dba = make_user("dba", Role.DBA)
    doomed = connectivity_check_request(cluster=demo_cluster, actor=dba, sample_seconds=60)
    wait_for(lambda: status_of(doomed) == "running" and doomed.progress >= 50, timeout=30, message="never ran")
    victim.kill()

    # The heartbeat stops; after HADR_OPERATION_HEARTBEAT_TIMEOUT (4 s in tests) the reaper fails it.
    wait_for(lambda: doomed.pk in operations_reap(), timeout=30, interval=0.5, message="reaper never reaped")
    doomed.refresh_from_db()
    assert doomed.status == "failed"
    assert doomed.error.startswith("Worker lost: no heartbeat since")
    assert doomed.finished_at is not None

    start_worker("ops", name="rescue")
    retry = connectivity_check_request(cluster=demo_cluster, actor=dba)
    wait_for(lambda: status_of(retry) == "succeeded", timeout=30, message="the next operation never ran")


def test_beat_schedule_runs_the_reaper_on_the_default_queue():
    from hadr_portal.celery import app

    app.loader.import_default_modules()
    app.finalize()
    entries = {entry["task"]: entry for entry in app.conf.beat_schedule.values()}
    reaper = entries["hadr_portal.core.tasks.operations_reap"]
    assert reaper["options"]["queue"] == "default"
