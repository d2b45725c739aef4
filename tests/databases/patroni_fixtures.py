"""The real Patroni cluster (tests/infra/patroni.py) as a `patroni` cluster of the catalog, for the tests of the HA
operations and the write probe. The cluster is shared by the whole `patroni` group: a test finds it settled (one
leader, the replica streaming, automatic failover on) and leaves it so, whoever leads."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hadr_portal.adapters.patroni import PatroniClient
from hadr_portal.core.models import Operation
from hadr_portal.core.operations import operation_execute
from hadr_portal.databases.models import Cluster, Engine, Node
from hadr_portal.databases.writeprobe import write_probe_setup
from tests.infra.patroni import REST_PASSWORD, REST_USER, SUPERUSER_PASSWORD, PatroniCluster

VARIABLES = {"HADR_TEST_HA_OPS_PASSWORD": SUPERUSER_PASSWORD, "HADR_TEST_HA_OPS_REST_PASSWORD": REST_PASSWORD}


def rest_client(patroni: PatroniCluster) -> PatroniClient:
    return PatroniClient(patroni.rest_urls, username=REST_USER, password=REST_PASSWORD)


def cluster_settle(patroni: PatroniCluster, timeout: float = 60) -> None:
    """Automatic failover on, one leader every member agrees on, the replica streaming."""
    api = rest_client(patroni)
    if api.cluster().paused:
        api.pause(False)
    patroni.wait(patroni.ready, "settled cluster with a streaming replica", timeout)
    patroni.wait(lambda: not api.cluster().paused, "automatic failover on", 10)


def run(operation: Operation) -> Operation:
    """The operation, run here as the ops worker would run it."""
    finished = operation_execute(operation_id=operation.pk)
    assert finished is not None
    return finished


@pytest.fixture
def ha_cluster(patroni_cluster: PatroniCluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    """Cluster `ha` of engine `patroni`: the nodes named after the members, the admin password and the REST API's
    in environment variables, the probe table made."""
    for name, value in VARIABLES.items():
        monkeypatch.setenv(name, value)
    cluster_settle(patroni_cluster)
    cluster = Cluster.objects.create(
        name="ha",
        engine=Engine.PATRONI,
        patroni_urls=patroni_cluster.rest_urls,
        patroni_user=REST_USER,
        patroni_password_env="HADR_TEST_HA_OPS_REST_PASSWORD",
        user="postgres",
        password_env="HADR_TEST_HA_OPS_PASSWORD",
    )
    for node in patroni_cluster.nodes:
        Node.objects.create(cluster=cluster, name=node.name, host="127.0.0.1", port=node.pg_port)
    write_probe_setup(cluster)
    yield cluster
    cluster_settle(patroni_cluster)  # the next test of the group, here or in another module, finds it healthy
