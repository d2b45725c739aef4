"""What other apps read through a check's keys (`Check.node`, `Check.policy`): replication lag history, the old
primary's last position for a failover, a restore's RTO objective, a service's recovery readiness."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from hadr_portal.backups.models import BackupPolicy, StorageTarget
from hadr_portal.backups.selectors import rto_objective_minutes
from hadr_portal.databases.failover_plan import FailoverPlan, _last_known_primary_lsn
from hadr_portal.databases.models import Cluster, Node
from hadr_portal.databases.selectors import cluster_lag_history
from hadr_portal.incidents.recovery import service_clusters, service_policies
from hadr_portal.status.models import Check, CheckResult
from tests.status.factories import make_check, make_service

pytestmark = pytest.mark.django_db


@pytest.fixture
def clusters() -> dict[str, Cluster]:
    made = {}
    for name, port in (("demo", 5441), ("other", 5451)):
        made[name] = cluster = Cluster.objects.create(name=name, dbname="onboarding")
        for offset, node in enumerate(("primary", "replica")):
            Node.objects.create(cluster=cluster, name=node, host="127.0.0.1", port=port + offset)
    return made


def primary_results(check: Check, lags: list[int]) -> None:
    now = timezone.now()
    CheckResult.objects.bulk_create(
        CheckResult(
            health_check=check,
            at=now - timedelta(minutes=len(lags) - n),
            outcome="up",
            data={"role": "primary", "lag_bytes": lag, "lsn": f"0/{lag:X}"},
        )
        for n, lag in enumerate(lags)
    )


def test_lag_history_and_the_old_primarys_position_come_from_that_nodes_checks(clusters):
    demo, other = clusters["demo"], clusters["other"]
    service = make_service("db", kind="database")
    primary_results(make_check(service, "demo", "postgres", node=demo.nodes.get(name="primary")), [10, 30, 20])
    primary_results(make_check(service, "other", "postgres", node=other.nodes.get(name="primary")), [99])

    assert [lag for _, lag in cluster_lag_history(demo)] == [10.0, 30.0, 20.0]  # oldest first, its own checks only
    plan = FailoverPlan(demo, None, demo.nodes.get(name="primary"), "down", None, None)
    assert _last_known_primary_lsn(plan) == 20  # 0/14: the newest position the primary's check recorded


def test_a_restores_rto_objective_and_a_services_readiness_follow_its_checks_keys(clusters, tmp_path):
    storage = StorageTarget.objects.create(name="local", kind="local", config={"path": str(tmp_path)})
    nightly = BackupPolicy.objects.create(name="nightly", cluster=clusters["demo"], dbname="app", storage=storage)
    unwatched = BackupPolicy.objects.create(name="spare", cluster=clusters["other"], dbname="app", storage=storage)
    database = make_service("db", kind="database", rto_minutes=30)
    make_check(database, "backup", "backup", policy=nightly)
    make_check(database, "primary", "postgres", node=clusters["demo"].nodes.get(name="primary"))
    make_check(database, "replica", "postgres", node=clusters["demo"].nodes.get(name="replica"))
    make_check(database, "by-dsn", "postgres", {"dsn_env": "HADR_DSN_REPLICA"})

    assert (rto_objective_minutes(nightly), rto_objective_minutes(unwatched)) == (30, None)
    assert [policy.name for policy in service_policies(database)] == ["nightly"]
    assert [cluster.name for cluster in service_clusters(database)] == ["demo"]  # once, for both its nodes
