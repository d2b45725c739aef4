"""The two Patroni actions that replace data or a leader, run for real: reinitializing a replica, and Patroni's
manual failover when the leader is gone (automatic failover paused, the leader's PostgreSQL stopped)."""

from __future__ import annotations

import subprocess

import psycopg
import pytest

from hadr_portal.databases.models import Cluster
from hadr_portal.databases.patroni_ops import member_action_request, patroni_failover_request, pause_request
from hadr_portal.demo import patroni as demo
from tests.databases.patroni_fixtures import ha_cluster, rest_client, run  # noqa: F401
from tests.infra.patroni import SUPERUSER_PASSWORD, PatroniCluster

pytestmark = [pytest.mark.slow, pytest.mark.django_db, pytest.mark.xdist_group("patroni")]


def started_at(patroni: PatroniCluster, name: str) -> object:
    node = next(node for node in patroni.nodes if node.name == name)
    conninfo = f"host=127.0.0.1 port={node.pg_port} dbname=postgres user=postgres password={SUPERUSER_PASSWORD}"
    with psycopg.connect(conninfo, connect_timeout=3) as conn:
        return conn.execute("SELECT pg_postmaster_start_time(), to_regclass('hadr_probe.writes')::text").fetchone()


def test_reinitializing_the_replica_copies_it_afresh_and_it_streams_again(
    ha_cluster: Cluster,  # noqa: F811
    patroni_cluster: PatroniCluster,
) -> None:
    leader = patroni_cluster.leader()
    replica = next(node.name for node in patroni_cluster.nodes if node.name != leader)
    before = started_at(patroni_cluster, replica)
    operation = run(member_action_request(kind="member_reinit", cluster=ha_cluster, actor=None, member=replica))
    assert operation.status == "succeeded", operation.error
    assert operation.result["member"] == replica
    after = started_at(patroni_cluster, replica)
    assert after[0] > before[0] and after[1] == "hadr_probe.writes"  # a new server, with the leader's data
    assert patroni_cluster.leader() == leader
    patroni_cluster.wait(patroni_cluster.ready, "the reinitialized replica streaming", 60)


def test_patronis_manual_failover_promotes_the_candidate_when_the_leader_is_gone(
    ha_cluster: Cluster,  # noqa: F811
    patroni_cluster: PatroniCluster,
) -> None:
    leader = patroni_cluster.leader()
    candidate = next(node.name for node in patroni_cluster.nodes if node.name != leader)
    assert run(pause_request(cluster=ha_cluster, actor=None, paused=True)).status == "succeeded"
    data = next(node.member.data_dir for node in patroni_cluster.nodes if node.name == leader)
    try:
        # paused, Patroni leaves a stopped PostgreSQL stopped and promotes nobody: the leader is gone
        subprocess.run(
            ["runuser", "-u", "postgres", "--", f"{demo.PG_BIN_DIR}/pg_ctl", "stop", "-m", "fast", "-D", str(data)],
            check=True,
            capture_output=True,
        )
        api = rest_client(patroni_cluster)
        patroni_cluster.wait(
            lambda: (m := api.cluster().member(leader)) is not None and m.state == "stopped", "leader stopped", 30
        )
        operation = run(patroni_failover_request(cluster=ha_cluster, actor=None, candidate=candidate))
        assert operation.status == "succeeded", operation.error
        assert operation.result["new_leader"] == candidate and operation.result["seconds_to_writable"] < 60
        assert patroni_cluster.leader() == candidate
    finally:
        run(pause_request(cluster=ha_cluster, actor=None, paused=False))  # resumed: Patroni rewinds the old leader
    patroni_cluster.wait(patroni_cluster.ready, "the old leader back as a streaming replica", 90)
