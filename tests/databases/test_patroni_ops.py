"""What a DBA asks Patroni to do, as operations run the way the ops worker runs them, against the real Patroni
cluster: pause and resume, a member restart, a change of the dynamic configuration, and the requests refused
before anything is asked of Patroni (a wrong member, a running leader, an unsafe ttl, a second switchover)."""

from __future__ import annotations

import psycopg
import pytest

from hadr_portal.core.models import Operation
from hadr_portal.core.operation_kinds import ScopeConflict
from hadr_portal.core.permissions import Role
from hadr_portal.databases.models import Cluster
from hadr_portal.databases.patroni_ops import (
    HaRefused,
    config_changes,
    config_request,
    member_action_request,
    patroni_failover_request,
    pause_request,
    switchover_request,
)
from hadr_portal.databases.patroni_state import ha_state_refresh
from tests.conftest import make_user
from tests.databases.patroni_fixtures import ha_cluster, rest_client, run  # noqa: F401 - the fixture
from tests.infra.patroni import SUPERUSER_PASSWORD, PatroniCluster

pytestmark = [pytest.mark.slow, pytest.mark.django_db, pytest.mark.xdist_group("patroni")]


def leader_and_replica(patroni: PatroniCluster) -> tuple[str, str]:
    leader = patroni.leader()
    return leader, next(node.name for node in patroni.nodes if node.name != leader)


def postmaster_started(patroni: PatroniCluster, name: str) -> object:
    port = next(node.pg_port for node in patroni.nodes if node.name == name)
    conninfo = f"host=127.0.0.1 port={port} dbname=postgres user=postgres password={SUPERUSER_PASSWORD}"
    with psycopg.connect(conninfo, connect_timeout=2) as conn:
        return conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0]


def test_requests_patroni_would_refuse_or_that_are_unsafe_are_refused_before_anything_is_asked(
    ha_cluster: Cluster,  # noqa: F811
    patroni_cluster: PatroniCluster,
) -> None:
    dba = make_user("dina", Role.DBA)
    leader, replica = leader_and_replica(patroni_cluster)
    with pytest.raises(HaRefused, match=rf"'nobody' is not a member of ha \(replicas: {replica}\)"):
        switchover_request(cluster=ha_cluster, actor=dba, candidate="nobody")
    with pytest.raises(HaRefused, match=f"{leader} is already the leader"):
        switchover_request(cluster=ha_cluster, actor=dba, candidate=leader)
    with pytest.raises(HaRefused, match=f"{leader} is a running leader: use a switchover"):
        patroni_failover_request(cluster=ha_cluster, actor=dba, candidate=replica)
    with pytest.raises(HaRefused, match=f"{leader} is the leader: switch over first"):
        member_action_request(kind="member_reinit", cluster=ha_cluster, actor=dba, member=leader)
    with pytest.raises(HaRefused, match="'nobody' is not a member of ha"):
        member_action_request(kind="member_restart", cluster=ha_cluster, actor=dba, member="nobody")
    # the cluster runs loop_wait 2, retry_timeout 4: a ttl of 5 would let two leaders overlap
    with pytest.raises(HaRefused, match=r"\(2 \+ 2 × 4\) must not exceed ttl \(5\)"):
        config_request(cluster=ha_cluster, actor=dba, changes={"ttl": 5})
    with pytest.raises(HaRefused, match="'wal_level' is not a setting the portal changes"):
        config_request(cluster=ha_cluster, actor=dba, changes={"wal_level": "minimal"})
    with pytest.raises(HaRefused, match="loop_wait must be a whole number, not 'soon'"):
        config_request(cluster=ha_cluster, actor=dba, changes={"loop_wait": "soon"})
    with pytest.raises(HaRefused, match="Automatic failover of ha is already on"):
        pause_request(cluster=ha_cluster, actor=dba, paused=False)
    assert not Operation.objects.exists()


def test_the_configuration_rules_hold_without_patroni() -> None:
    current = {"ttl": 10, "loop_wait": 2, "retry_timeout": 4, "maximum_lag_on_failover": 1048576}
    assert config_changes({"ttl": "12", "synchronous_mode": "on"}, current) == {"ttl": 12, "synchronous_mode": True}
    assert config_changes({"maximum_lag_on_failover": 0}, current) == {"maximum_lag_on_failover": 0}
    for raw, said in (
        ({"ttl": 5}, "must not exceed ttl"),
        ({"retry_timeout": 5}, "must not exceed ttl"),  # 2 + 2 × 5 > 10
        ({"loop_wait": 0}, "loop_wait must be positive"),
        ({"ttl": "1.5"}, "ttl must be a whole number"),
        ({"synchronous_mode": "maybe"}, "synchronous_mode must be true or false"),
        ({"postgresql": {}}, "not a setting the portal changes"),
        ({}, "Nothing to change"),
    ):
        with pytest.raises(HaRefused, match=said):
            config_changes(raw, current)


def test_pausing_when_paused_is_refused(ha_cluster: Cluster, patroni_cluster: PatroniCluster) -> None:  # noqa: F811
    api = rest_client(patroni_cluster)
    api.pause(True)
    try:
        with pytest.raises(HaRefused, match="Automatic failover of ha is already paused"):
            pause_request(cluster=ha_cluster, actor=make_user("dina", Role.DBA), paused=True)
    finally:
        api.pause(False)
    assert not Operation.objects.exists()


def test_pause_and_resume_turn_automatic_failover_off_and_on(
    ha_cluster: Cluster,  # noqa: F811
    patroni_cluster: PatroniCluster,
) -> None:
    dba = make_user("dina", Role.DBA)
    paused = run(pause_request(cluster=ha_cluster, actor=dba, paused=True))
    assert paused.status == Operation.Status.SUCCEEDED, paused.error
    assert paused.result == {"paused": True}
    assert ha_state_refresh(ha_cluster)["paused"] is True
    assert rest_client(patroni_cluster).cluster().paused

    resumed = run(pause_request(cluster=ha_cluster, actor=dba, paused=False))
    assert resumed.status == Operation.Status.SUCCEEDED, resumed.error
    assert ha_state_refresh(ha_cluster)["paused"] is False
    assert not rest_client(patroni_cluster).cluster().paused


def test_restarting_the_replica_restarts_its_postgres_and_waits_until_it_runs_again(
    ha_cluster: Cluster,  # noqa: F811
    patroni_cluster: PatroniCluster,
) -> None:
    leader, replica = leader_and_replica(patroni_cluster)
    before = postmaster_started(patroni_cluster, replica)
    operation = run(
        member_action_request(
            kind="member_restart", cluster=ha_cluster, actor=make_user("dina", Role.DBA), member=replica
        )
    )
    assert operation.status == Operation.Status.SUCCEEDED, operation.error
    assert operation.result["member"] == replica and operation.result["seconds"] > 0
    member = rest_client(patroni_cluster).cluster().member(replica)
    assert member is not None and member.state in ("running", "streaming") and member.lag_bytes is not None
    assert postmaster_started(patroni_cluster, replica) > before
    assert patroni_cluster.leader() == leader  # a replica's restart moves nothing


def test_a_documented_setting_is_changed_and_put_back(ha_cluster: Cluster, patroni_cluster: PatroniCluster) -> None:  # noqa: F811
    dba = make_user("dina", Role.DBA)
    api = rest_client(patroni_cluster)
    original = api.config()["maximum_lag_on_failover"]
    try:
        changed = run(config_request(cluster=ha_cluster, actor=dba, changes={"maximum_lag_on_failover": "2097152"}))
        assert changed.status == Operation.Status.SUCCEEDED, changed.error
        assert changed.result == {"changes": {"maximum_lag_on_failover": 2097152}}
        assert api.config()["maximum_lag_on_failover"] == 2097152
        assert ha_state_refresh(ha_cluster)["config"]["maximum_lag_on_failover"] == 2097152
        assert "maximum_lag_on_failover=2097152" in " ".join(line.message for line in changed.log_lines.all())

        back = run(config_request(cluster=ha_cluster, actor=dba, changes={"maximum_lag_on_failover": original}))
        assert back.status == Operation.Status.SUCCEEDED, back.error
        assert api.config()["maximum_lag_on_failover"] == original
    finally:
        api.config_patch({"maximum_lag_on_failover": original})


def test_a_second_request_is_refused_while_a_switchover_is_queued(
    ha_cluster: Cluster,  # noqa: F811
    patroni_cluster: PatroniCluster,
) -> None:
    dba = make_user("dina", Role.DBA)
    leader, replica = leader_and_replica(patroni_cluster)
    first = switchover_request(cluster=ha_cluster, actor=dba, candidate=replica)
    assert first.status == Operation.Status.QUEUED and first.parameters["leader"] == leader
    with pytest.raises(ScopeConflict, match=f"Switchover #{first.pk} on cluster:ha has been queued since"):
        switchover_request(cluster=ha_cluster, actor=dba)
    with pytest.raises(ScopeConflict, match=f"Switchover #{first.pk}"):
        member_action_request(kind="member_restart", cluster=ha_cluster, actor=dba, member=replica)
    assert list(Operation.objects.values_list("pk", flat=True)) == [first.pk]
    assert patroni_cluster.leader() == leader  # queued, never run: nothing was asked of Patroni
