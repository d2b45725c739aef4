"""A failover whose worker dies half-way (kill points through HADR_TEST_KILL_POINTS, on a real worker): the record
and its journal exist before anything acts, and the reaper finishes from them and the nodes' real state."""

from __future__ import annotations

import time

import pytest
from django.utils import timezone

from hadr_portal.core.models import Operation
from hadr_portal.core.operations import operations_reap
from hadr_portal.databases.failover import failover_request
from hadr_portal.databases.models import Cluster, Failover
from hadr_portal.databases.topology import cluster_probe
from hadr_portal.incidents.models import Incident

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def reaped(operation: Operation, timeout: float = 120) -> Operation:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        operations_reap(now=timezone.now())
        operation.refresh_from_db()
        if operation.status != "running" and operation.status != "queued":
            return operation
        time.sleep(0.5)
    raise AssertionError(f"operation #{operation.pk} was not reaped: {operation.status}")


def killed_at(pg_pair, start_worker, point: str) -> tuple[Operation, Failover]:
    pg_pair.primary.stop(mode="immediate")  # the primary dies; the DBA fails over
    cluster_probe(pg_pair.cluster)
    start_worker("ops", env={"HADR_TEST_KILL_POINTS": point})
    operation = failover_request(cluster=pg_pair.cluster, actor=None)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        record = Failover.objects.filter(operation_id=operation.pk).first()
        if record and point.removeprefix("failover.") in record.steps + (["promoted"] if record.promoted_at else []):
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"the worker never reached {point}")
    operation = reaped(operation)
    return operation, Failover.objects.get(operation=operation)


@pytest.mark.parametrize(
    ("point", "steps"),
    [
        ("failover.promoted", ["fence", "promote"]),  # right after pg_promote
        ("failover.record", ["fence", "promote", "record"]),  # writable, before the topology was recorded
        ("failover.hook", ["fence", "promote", "record", "hook"]),  # recorded, before the hook ran
    ],
    ids=["after-promote", "before-record", "before-hook"],
)
def test_killed_after_the_promotion_the_reaper_records_the_primary_and_runs_the_hook(
    pg_pair, start_worker, infra, point: str, steps: list[str]
) -> None:
    hooks = infra.root / f"hooks-{pg_pair.cluster.name}"  # a place the command user (the hook runs as it) may write
    hooks.mkdir(mode=0o777)
    hooks.chmod(0o777)
    marker = hooks / "hook-ran"
    Cluster.objects.filter(pk=pg_pair.cluster.pk).update(post_failover_hook={"argv": ["/usr/bin/touch", str(marker)]})
    operation, record = killed_at(pg_pair, start_worker, point)
    assert operation.status == "failed" and "Worker lost" in operation.error
    assert record.steps == steps and record.promoted_at is not None
    cluster = Cluster.objects.get(pk=pg_pair.cluster.pk)
    assert cluster.primary is not None and cluster.primary.name == "replica"  # the reaper finished the record
    assert (
        "recorded as the primary" in record.finished_by_reaper and "post-failover hook run" in record.finished_by_reaper
    )
    assert marker.exists()  # the hook the dead worker never ran
    assert not pg_pair.in_recovery(pg_pair.replica)
    assert not Incident.objects.exists()  # the cluster has a writable primary


def test_killed_while_fencing_nothing_was_promoted_and_the_reaper_changes_nothing(pg_pair, start_worker) -> None:
    operation, record = killed_at(pg_pair, start_worker, "failover.fence")
    assert operation.status == "failed" and "Worker lost" in operation.error
    assert record.steps == ["fence"] and record.promoted_at is None and record.finished_by_reaper == ""
    assert pg_pair.in_recovery(pg_pair.replica)  # never promoted: the DBA may simply fail over again
    assert Cluster.objects.get(pk=pg_pair.cluster.pk).primary_id in (None, pg_pair.cluster.primary_id)


def test_killed_before_the_promotion_leaves_no_primary_and_opens_an_incident(pg_pair, start_worker) -> None:
    operation, record = killed_at(pg_pair, start_worker, "failover.promote")
    assert operation.status == "failed" and record.steps == ["fence", "promote"] and record.promoted_at is None
    assert pg_pair.in_recovery(pg_pair.replica)  # never promoted
    incident = Incident.objects.get()
    assert incident.title == f"Cluster {pg_pair.cluster.name} has no writable primary"
    assert "no writable primary" in record.finished_by_reaper
    assert incident.timeline.filter(text__contains=f"Failover #{operation.pk}").exists()
