"""A switchover whose worker dies right after Patroni was asked (kill point `switchover.asked`, on a real worker,
against the real Patroni cluster): the reaper fails the operation and says who leads now, nothing asks Patroni
again, and the write probe still records the change as the switchover's (no incident: it was asked for)."""

from __future__ import annotations

import time

import pytest
from django.utils import timezone

from hadr_portal.core.models import Operation
from hadr_portal.core.operations import operations_reap
from hadr_portal.databases.models import Cluster, LeaderChange
from hadr_portal.databases.patroni_ops import switchover_request
from hadr_portal.databases.writeprobe import probe_tick
from hadr_portal.incidents.models import Incident
from tests.databases.patroni_fixtures import VARIABLES, ha_cluster  # noqa: F401
from tests.infra.patroni import PatroniCluster

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.xdist_group("patroni")]


def test_a_worker_killed_after_asking_for_a_switchover_is_reaped_and_the_change_is_still_measured(
    ha_cluster: Cluster,  # noqa: F811
    patroni_cluster: PatroniCluster,
    start_worker,
) -> None:
    cluster = ha_cluster
    leader = patroni_cluster.leader()
    probe_tick(cluster)
    assert Cluster.objects.get(pk=cluster.pk).probe_state["leader"] == leader

    start_worker("ops", env={**VARIABLES, "HADR_TEST_KILL_POINTS": "switchover.asked"})
    operation = switchover_request(cluster=cluster, actor=None)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        probe_tick(Cluster.objects.get(pk=cluster.pk))
        operations_reap(now=timezone.now())
        operation.refresh_from_db()
        if operation.status == Operation.Status.FAILED and LeaderChange.objects.filter(cluster=cluster).exists():
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"operation #{operation.pk} is {operation.status}; no leader change seen")
    assert "Worker lost" in operation.error
    new_leader = patroni_cluster.leader()
    assert new_leader and new_leader != leader  # Patroni did what it was asked, once
    said = [line.message for line in operation.log_lines.all()]
    assert f"{new_leader} leads {cluster.name} now (Patroni did hand over)" in said
    change = LeaderChange.objects.get(cluster=cluster)
    assert change.cause == LeaderChange.Cause.SWITCHOVER and change.operation_id == operation.pk
    assert change.rows_lost == 0
    assert not Incident.objects.exists()
