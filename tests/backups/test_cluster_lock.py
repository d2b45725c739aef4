"""One destructive operation per cluster at a time, across kinds: a physical backup, a failover, a rebuild, a
replace hold the cluster alone; dumps, restores beside it and drills share it. A refusal says what runs and since
when, and is audited; two requests at the same moment cannot both pass."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from hadr_portal.backups import services
from hadr_portal.backups.models import BackupPolicy, StorageTarget
from hadr_portal.core.models import AuditEntry, Operation
from hadr_portal.core.operation_kinds import OperationConflict, ScopeConflict
from hadr_portal.core.operations import operation_request
from hadr_portal.databases.models import Cluster


@pytest.fixture
def policies(db, demo_cluster: Cluster, tmp_path) -> dict[str, BackupPolicy]:
    storage = StorageTarget.objects.create(name="lock-local", kind="local", config={"path": str(tmp_path)})
    other = Cluster.objects.create(name="other", dbname="postgres")
    make = BackupPolicy.objects.create
    return {
        "physical": make(
            name="demo-cluster", cluster=demo_cluster, dbname="onboarding", engine="pgbackrest", storage=storage
        ),
        "dump": make(name="demo-onboarding", cluster=demo_cluster, dbname="onboarding", storage=storage),
        "dump2": make(name="demo-postgres", cluster=demo_cluster, dbname="postgres", storage=storage),
        "other": make(name="other-db", cluster=other, dbname="postgres", storage=storage),
    }


def cluster_wide(kind: str = "rebuild_replica", cluster: str = "demo") -> Operation:
    return operation_request(
        kind=kind, target=f"cluster:{cluster}", scope=f"cluster:{cluster}", scope_exclusive=True, actor=None
    )


def test_a_physical_backup_holds_its_cluster_against_every_other_kind(policies) -> None:
    backup = services.backup_request(policy=policies["physical"], actor=None)
    with pytest.raises(ScopeConflict) as refused:
        cluster_wide("failover")
    message = str(refused.value)
    assert f"Backup #{backup.pk} on backup:demo-cluster has been queued since" in message
    assert "one destructive operation per cluster at a time" in message
    with pytest.raises(ScopeConflict):
        services.backup_request(policy=policies["dump"], actor=None)  # a dump waits too
    assert services.backup_request(policy=policies["other"], actor=None)  # another cluster is not held
    assert AuditEntry.objects.filter(action="operation.failover", outcome="refused", detail__contains="since").exists()


def test_dumps_share_a_cluster_but_keep_out_what_needs_it_alone(policies) -> None:
    first = services.backup_request(policy=policies["dump"], actor=None)
    services.backup_request(policy=policies["dump2"], actor=None)  # two databases of one cluster: fine
    with pytest.raises(ScopeConflict, match=f"#{first.pk}"):
        cluster_wide()
    with pytest.raises(OperationConflict):  # the same database twice: the per-target rule, as before
        services.backup_request(policy=policies["dump"], actor=None)
    Operation.objects.filter(scope="cluster:demo").update(status="succeeded")
    assert cluster_wide().scope_exclusive


def test_an_exclusive_operation_keeps_out_a_dump(policies) -> None:
    held = cluster_wide("failover")
    with pytest.raises(ScopeConflict, match=f"#{held.pk} on cluster:demo"):
        services.backup_request(policy=policies["dump"], actor=None)


@pytest.mark.django_db(transaction=True)
def test_two_requests_at_the_same_moment_cannot_both_hold_the_cluster(policies) -> None:
    results: list[str] = []
    barrier = threading.Barrier(2)

    def request(kind: str) -> None:
        barrier.wait()
        try:
            if kind == "backup":
                services.backup_request(policy=BackupPolicy.objects.get(name="demo-cluster"), actor=None)
            else:
                cluster_wide("failover")
            results.append("queued")
        except OperationConflict:
            results.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=request, args=(kind,)) for kind in ("backup", "failover")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == ["queued", "refused"]
    assert Operation.objects.filter(scope="cluster:demo", status="queued").count() == 1
