"""A portal with something of everything the metrics pages and /metrics show."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from hadr_portal.backups.models import Backup, BackupPolicy, StorageTarget
from hadr_portal.core.models import Operation
from hadr_portal.databases.models import Node
from hadr_portal.metrics.models import DatabaseSize, Funnel
from hadr_portal.status.models import CheckResult
from tests.metrics.factories import make_day_counts, make_funnel
from tests.status.factories import make_check, make_service


@pytest.fixture
def portal_data(demo_cluster) -> Funnel:
    """Services with latency and host figures, a lagging replica, a backup policy, operations (a failed one, a
    restore drill, a failover), database sizes, and 30 days of funnel counts."""
    now = timezone.now()
    web = make_service("shop", tier=1, display_name="Shop front", state="up")
    make_check(web, last_latency_ms=42.0, last_result_at=now)
    host = make_service("worker-host", kind="host", display_name="Worker host")
    check = make_check(host, "resources", kind="host", config={"disk_paths": ["/"], "cpu_warning": 70})
    figures = {"cpu": 12.5, "memory": 40.0, "disks": {"/": 71.0}}
    check.last_data = figures
    check.save()
    CheckResult.objects.bulk_create(
        CheckResult(
            health_check=check, at=now - timedelta(minutes=10 * n), outcome="up", data=figures | {"cpu": 10.0 + n}
        )
        for n in range(12)
    )
    Node.objects.filter(name="replica").update(last_probe={"reachable": True, "role": "replica", "lag_bytes": 2048})
    storage = StorageTarget.objects.create(name="local", kind="local", config={"path": "/tmp/hadr-test-backups"})
    policy = BackupPolicy.objects.create(
        name="demo-onboarding", cluster=demo_cluster, dbname="onboarding", storage=storage
    )
    Backup.objects.create(
        policy=policy,
        storage=storage,
        kind="scheduled",
        engine="pg_dump",
        status="good",
        key="a.dump",
        size=10,
        sha256="0" * 64,
        started_at=now - timedelta(hours=3),
        finished_at=now - timedelta(hours=3),
    )
    Operation.objects.create(
        kind="backup",
        target=policy.target,
        status="failed",
        error="pg_dump: connection refused",
        created_at=now - timedelta(hours=2),
        finished_at=now - timedelta(hours=2),
    )
    Operation.objects.create(
        kind="restore_drill",
        target="cluster:demo",
        status="succeeded",
        started_at=now - timedelta(days=2, minutes=14),
        finished_at=now - timedelta(days=2),
    )
    Operation.objects.create(
        kind="failover", target="cluster:demo", status="succeeded", started_at=now - timedelta(days=3)
    )
    for hours, size in ((30, 8_000_000), (2, 9_500_000)):
        DatabaseSize.objects.create(
            cluster=demo_cluster, dbname="onboarding", at=now - timedelta(hours=hours), bytes=size
        )
    funnel = make_funnel(node="replica", last_success_at=now)
    counts = {"signed_up": 100, "email_verified": 70, "profile_completed": 42, "first_project_created": 21}
    make_day_counts(funnel, counts, days=30)
    return funnel
