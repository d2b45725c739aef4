"""The write probe against the real Patroni cluster: a row a tick where writes go, read back on the replica, Patroni's
state kept beside it; a switchover asked for measured as such (nothing lost, no incident); and an automatic
failover (kill -9 of the leader's Patroni and postmaster) measured and turned into an incident whose timeline
follows the old leader back. Transactional: what the probe tells the incidents app is sent on commit."""

from __future__ import annotations

import os
import signal
import time

import pytest

from hadr_portal.core.models import Operation
from hadr_portal.core.permissions import Role
from hadr_portal.databases.models import Cluster, LeaderChange, ProbeWrite
from hadr_portal.databases.patroni_ops import switchover_request
from hadr_portal.databases.writeprobe import probe_tick, write_probe_setup
from hadr_portal.demo.patroni import settled
from hadr_portal.incidents.models import Incident
from tests.conftest import make_user
from tests.databases.patroni_fixtures import ha_cluster, run  # noqa: F401 - the fixture
from tests.infra.patroni import PatroniCluster, PatroniNode

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.xdist_group("patroni")]


def leader_and_replica(patroni: PatroniCluster) -> tuple[str, str]:
    leader = patroni.leader()
    return leader, next(node.name for node in patroni.nodes if node.name != leader)


def tick(cluster: Cluster) -> dict:
    return probe_tick(Cluster.objects.get(pk=cluster.pk))


def test_a_tick_writes_on_the_leader_reads_back_on_the_replica_and_keeps_patronis_view(
    ha_cluster: Cluster,  # noqa: F811
    patroni_cluster: PatroniCluster,
) -> None:
    leader, replica = leader_and_replica(patroni_cluster)
    leader_port = next(node.pg_port for node in patroni_cluster.nodes if node.name == leader)
    assert f"ready on ha (127.0.0.1:{leader_port})" in write_probe_setup(ha_cluster)  # idempotent, on the leader
    tick(ha_cluster)
    time.sleep(0.5)
    state = tick(ha_cluster)

    assert state["leader"] == leader and state["error"] == ""
    assert ProbeWrite.objects.filter(cluster=ha_cluster, node=leader).count() == 2
    assert set(state["replicas"]) == {replica}
    delay = state["replicas"][replica]
    assert delay["error"] == "" and 0 <= delay["seconds"] < 5, delay
    cluster = Cluster.objects.get(pk=ha_cluster.pk)
    assert cluster.probe_state == state
    ha = cluster.ha_state
    assert ha["error"] == "" and ha["leader"] == leader and ha["paused"] is False
    assert isinstance(ha["timeline"], int) and ha["timeline"] >= 1
    members = {member["name"]: member for member in ha["members"]}
    assert set(members) == {"node1", "node2"}
    assert members[leader]["role"] == "leader" and members[replica]["lag_bytes"] is not None
    assert "lag_seconds" in members[replica]  # the probe's delay from the tick before
    assert ha["config"]["ttl"] == 10 and cluster.ha_state_at is not None
    assert not LeaderChange.objects.exists()


def test_a_switchover_is_measured_as_asked_for_loses_nothing_and_opens_no_incident(
    ha_cluster: Cluster,  # noqa: F811
    patroni_cluster: PatroniCluster,
) -> None:
    leader, candidate = leader_and_replica(patroni_cluster)
    incidents = Incident.objects.count()
    tick(ha_cluster)
    operation = run(switchover_request(cluster=ha_cluster, actor=make_user("dina", Role.DBA), candidate=candidate))
    assert operation.status == Operation.Status.SUCCEEDED, operation.error
    assert patroni_cluster.leader() == candidate
    assert operation.result["new_leader"] == candidate and operation.result["old_leader"] == leader
    assert 0 < operation.result["seconds_to_writable"] < 30

    state = tick(ha_cluster)
    assert state["leader"] == candidate and state["error"] == ""
    change = LeaderChange.objects.get(cluster=ha_cluster)
    assert change.cause == LeaderChange.Cause.SWITCHOVER and change.operation_id == operation.pk
    assert (change.old_leader, change.new_leader) == (leader, candidate)
    assert change.rto_seconds is not None and 0 < change.rto_seconds < 60
    assert (change.rows_lost, change.rows_checked) == (0, 1)
    tick(ha_cluster)
    assert LeaderChange.objects.filter(cluster=ha_cluster).count() == 1
    assert Incident.objects.count() == incidents


def kill_leader(node: PatroniNode) -> None:
    """kill -9 of the member's Patroni (its whole process group) and of its postmaster, which Patroni started in a
    session of its own."""
    postmaster = int((node.member.data_dir / "postmaster.pid").read_text().splitlines()[0])
    assert node.process is not None
    os.killpg(node.process.pid, signal.SIGKILL)
    node.process.wait(10)
    try:
        os.kill(postmaster, signal.SIGKILL)
    except ProcessLookupError:
        pass  # it was in Patroni's process group after all


def node_restore(patroni: PatroniCluster, node: PatroniNode) -> None:
    if node.process is None or node.process.poll() is not None:
        patroni.node_start(node)
    patroni.wait(lambda: settled(patroni.rest_urls, patroni.auth, replicas=1), "the old leader back", 90)


# last of this module: it kills a member, then brings it back for the rest of the group
def test_an_automatic_failover_opens_an_incident_whose_timeline_follows_the_old_leader_back(
    ha_cluster: Cluster,  # noqa: F811
    patroni_cluster: PatroniCluster,
) -> None:
    leader, replica = leader_and_replica(patroni_cluster)
    node = next(node for node in patroni_cluster.nodes if node.name == leader)
    tick(ha_cluster)
    tick(ha_cluster)
    time.sleep(0.5)  # the replica has the rows the leader acknowledged
    try:
        kill_leader(node)
        killed = time.monotonic()
        while (state := tick(ha_cluster)).get("leader") != replica or state.get("error"):
            assert time.monotonic() - killed < 40, f"no writes on {replica} 40 s after the kill: {state}"
            time.sleep(0.5)
        change = LeaderChange.objects.get(cluster=ha_cluster)
        assert change.cause == LeaderChange.Cause.AUTOMATIC and change.operation is None
        assert (change.old_leader, change.new_leader) == (leader, replica)
        assert change.rto_seconds is not None and 0 < change.rto_seconds < 40
        assert (change.rows_lost, change.rows_checked) == (0, 2)
        incident = Incident.objects.get()
        assert "Automatic failover" in incident.title and incident.leader_change_id == change.pk
        said = [entry.text for entry in incident.timeline.all()]
        assert any(text.startswith(f"First write accepted on {replica}") for text in said), said
        tick(ha_cluster)
        assert Incident.objects.count() == 1 and LeaderChange.objects.count() == 1

        node_restore(patroni_cluster, node)
        deadline = time.monotonic() + 30
        while not LeaderChange.objects.get(pk=change.pk).settled:
            assert time.monotonic() < deadline, LeaderChange.objects.get(pk=change.pk).events
            tick(ha_cluster)
            time.sleep(0.5)
    finally:
        node_restore(patroni_cluster, node)
    events = [event["what"] for event in LeaderChange.objects.get(pk=change.pk).events]
    assert f"Old leader {leader} rejoined as a streaming replica" in events
    assert any("rejoined" in entry.text for entry in incident.timeline.all())
    assert Incident.objects.count() == 1
