"""Failover and replica rebuild against a real primary and streaming replica (one fresh pair per test)."""

from __future__ import annotations

import psycopg
import pytest
from django.core.management import CommandError, call_command

from hadr_portal.adapters.pg.node import wait_streaming
from hadr_portal.core.models import AuditEntry, Operation
from hadr_portal.core.operations import operation_execute
from hadr_portal.core.permissions import Role
from hadr_portal.databases.failover import failover_request
from hadr_portal.databases.failover_plan import FailoverRefused, failover_plan
from hadr_portal.databases.models import Cluster, Failover
from hadr_portal.databases.rebuild import RebuildRefused, rebuild_request
from hadr_portal.databases.topology import cluster_probe
from tests.conftest import make_user, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db]


def run(operation: Operation) -> Operation:
    finished = operation_execute(operation_id=operation.pk)
    assert finished is not None
    return finished


def titles(plan) -> str:
    return " | ".join(f"{f.level}: {f.title} {f.detail}" for f in plan.findings)


def test_failover_with_the_primary_down_promotes_the_replica_and_keeps_replicated_data(pg_pair):
    pg_pair.execute(pg_pair.primary, "INSERT INTO events (note) SELECT 'before ' || g FROM generate_series(1, 500) g")
    wait_streaming(pg_pair.replica.conninfo("onboarding"))
    cluster_probe(pg_pair.cluster)  # as the health checks do: the portal knows the primary's position
    pg_pair.primary.stop(mode="immediate")  # the primary dies
    dba = make_user("dina", Role.DBA)

    plan = failover_plan(pg_pair.cluster)
    assert plan.old_primary_state == "down", titles(plan)
    assert plan.lag_bytes == 0, titles(plan)  # everything committed had reached the replica
    assert plan.candidate.name == "replica"
    assert not plan.blockers and not plan.needs_isolation

    operation = run(failover_request(cluster=pg_pair.cluster, actor=dba))
    assert operation.status == "succeeded", operation.error
    assert not pg_pair.in_recovery(pg_pair.replica)
    pg_pair.execute(pg_pair.replica, "INSERT INTO events (note) VALUES ('after')")  # writes succeed
    assert pg_pair.execute(pg_pair.replica, "SELECT count(*) FROM events WHERE note LIKE 'before %'")[0][0] == 500

    cluster = Cluster.objects.get(pk=pg_pair.cluster.pk)
    assert cluster.primary.name == "replica"
    failover = Failover.objects.get(operation=operation)
    assert (failover.old_primary, failover.new_primary, failover.old_primary_state) == ("primary", "replica", "down")
    assert failover.lag_bytes == 0, "the position last seen survives the probes that found the primary down"
    assert 0 < failover.seconds_to_writable < 30
    assert operation.result["seconds_to_writable"] == pytest.approx(failover.seconds_to_writable, abs=0.01)
    assert AuditEntry.objects.filter(action="operation.failover", actor=dba).exists()


def test_a_running_primary_is_fenced_through_its_controller_before_the_promotion(pg_pair):
    operation = run(failover_request(cluster=pg_pair.cluster, actor=None))
    assert operation.status == "succeeded", operation.error
    assert not pg_pair.primary.is_running(), "the old primary must be stopped before the replica is promoted"
    assert not pg_pair.in_recovery(pg_pair.replica)
    fenced = operation.log_lines.filter(message__contains="fenced").values_list("message", flat=True)
    assert any("pg_ctl stop" in line for line in fenced)
    assert Failover.objects.get(operation=operation).old_primary_state == "up"


def test_without_a_controller_the_old_primary_is_made_read_only(pg_pair):
    pg_pair.cluster.nodes.update(controller={})
    operation = run(failover_request(cluster=pg_pair.cluster, actor=None))
    assert operation.status == "succeeded", operation.error
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        pg_pair.execute(pg_pair.primary, "INSERT INTO events (note) VALUES ('split brain')")
    assert "read-only" in Failover.objects.get(operation=operation).fencing


def test_a_failed_fence_stops_the_failover_unless_the_dba_confirms_isolation(pg_pair):
    pg_pair.cluster.nodes.filter(name="primary").update(controller={"controller": "command", "stop": ["false"]})
    operation = run(failover_request(cluster=pg_pair.cluster, actor=None))
    assert operation.status == "failed"
    assert "Fencing primary failed, so nothing was promoted" in operation.error
    assert pg_pair.in_recovery(pg_pair.replica), "nothing may be promoted when fencing failed"

    operation = run(
        failover_request(cluster=pg_pair.cluster, actor=None, isolation_reason="switch port 12 shut down by hand")
    )
    assert operation.status == "succeeded", operation.error
    assert Failover.objects.get(operation=operation).isolation_reason == "switch port 12 shut down by hand"


def test_refused_when_the_replica_is_down_or_both_nodes_are_down(pg_pair):
    pg_pair.replica.stop(mode="immediate")
    with pytest.raises(
        FailoverRefused, match=r"No replica is reachable and in recovery \(replica: connection refused\)"
    ):
        failover_request(cluster=pg_pair.cluster, actor=None)
    pg_pair.primary.stop(mode="immediate")
    with pytest.raises(FailoverRefused, match="No node is reachable"):
        failover_request(cluster=pg_pair.cluster, actor=None)
    assert not Operation.objects.filter(kind="failover").exists()
    assert Cluster.objects.get(pk=pg_pair.cluster.pk).primary is None


def test_refused_when_asked_to_promote_the_primary_itself(pg_pair):
    with pytest.raises(FailoverRefused, match="primary is not in recovery"):
        failover_request(cluster=pg_pair.cluster, actor=None, to="primary")


def test_a_lagging_replica_needs_a_written_reason(pg_pair):
    # The replica stops receiving (no primary_conninfo); the primary goes on writing.
    pg_pair.replica.stop()
    auto = pg_pair.replica.data_dir / "postgresql.auto.conf"
    auto.write_text("".join(line for line in auto.read_text().splitlines(True) if "primary_conninfo" not in line))
    pg_pair.replica.start()
    pg_pair.execute(pg_pair.primary, "INSERT INTO events (note) SELECT repeat('x', 1000) FROM generate_series(1, 200)")
    Cluster.objects.filter(pk=pg_pair.cluster.pk).update(max_failover_lag_bytes=64 * 1024)
    cluster = Cluster.objects.get(pk=pg_pair.cluster.pk)

    plan = failover_plan(cluster)
    assert plan.needs_lag_override and plan.lag_bytes > 64 * 1024, titles(plan)
    with pytest.raises(FailoverRefused, match="give a reason"):
        failover_request(cluster=cluster, actor=None, override_reason="too short")
    operation = run(
        failover_request(cluster=cluster, actor=None, override_reason="primary disk is failing, accept the loss")
    )
    assert operation.status == "succeeded", operation.error
    assert Failover.objects.get(operation=operation).override_reason == "primary disk is failing, accept the loss"
    assert AuditEntry.objects.filter(
        action="operation.failover", parameters__override_reason="primary disk is failing, accept the loss"
    ).exists()


def test_rebuild_turns_the_old_primary_into_a_streaming_replica_of_the_new_one(pg_pair):
    pg_pair.primary.stop(mode="immediate")
    assert run(failover_request(cluster=pg_pair.cluster, actor=None)).status == "succeeded"
    pg_pair.execute(pg_pair.replica, "INSERT INTO events (note) VALUES ('written on the new primary')")
    old = pg_pair.cluster.nodes.get(name="primary")

    operation = run(rebuild_request(cluster=pg_pair.cluster, node=old, actor=None))
    assert operation.status == "succeeded", operation.error
    assert operation.result["method"] == "pg_rewind"
    assert pg_pair.in_recovery(pg_pair.primary)
    wait_streaming(pg_pair.primary.conninfo("onboarding"), timeout=30)
    pg_pair.execute(pg_pair.replica, "INSERT INTO events (note) VALUES ('streamed')")
    wanted = "SELECT count(*) FROM events WHERE note IN ('written on the new primary', 'streamed')"
    wait_for(
        lambda: pg_pair.execute(pg_pair.primary, wanted)[0][0] == 2,
        timeout=10,
        message="rows did not stream to the rebuilt node",
    )
    old.refresh_from_db()
    assert old.role == "replica"


def test_rebuild_refuses_the_primary_and_nodes_without_a_controller(pg_pair):
    primary = pg_pair.cluster.nodes.get(name="primary")
    with pytest.raises(RebuildRefused, match="exactly one reachable primary besides primary"):
        rebuild_request(cluster=pg_pair.cluster, node=primary, actor=None)
    pg_pair.cluster.nodes.update(controller={})
    with pytest.raises(RebuildRefused, match="no controller"):
        rebuild_request(cluster=pg_pair.cluster, node=pg_pair.cluster.nodes.get(name="replica"), actor=None)


def test_only_a_dba_reaches_the_failover_page_and_a_double_click_makes_one_operation(pg_pair, client_as):
    url = f"/databases/{pg_pair.cluster.name}/failover"
    for role in (Role.DEVELOPER, Role.VIEWER, Role.DEVOPS):
        client = client_as(role)
        assert client.get(url).status_code == 403
        assert client.post(url, {"confirm": pg_pair.cluster.name}).status_code == 403
    assert not Operation.objects.filter(kind="failover").exists()

    dba = client_as(Role.DBA)
    page = dba.get(url)
    assert page.status_code == 200
    assert b"Primary primary is still up and accepting writes" in page.content
    wrong = dba.post(url, {"confirm": "nope", "to": "replica"})
    assert wrong.status_code == 400 and b"Type the cluster" in wrong.content
    first = dba.post(url, {"confirm": pg_pair.cluster.name, "to": "replica"})
    second = dba.post(url, {"confirm": pg_pair.cluster.name, "to": "replica"})
    operation = Operation.objects.get(kind="failover")
    assert first.status_code == second.status_code == 302
    assert first["Location"] == second["Location"] == f"/operations/{operation.pk}/"


def test_cli_shows_the_pre_checks_and_fails_over_with_yes(pg_pair, capsys):
    pg_pair.primary.stop(mode="immediate")
    call_command("failover", pg_pair.cluster.name)
    out = capsys.readouterr().out
    assert "Primary primary is down" in out and "Add --yes to fail over" in out
    assert not Operation.objects.filter(kind="failover").exists()
    call_command("failover", pg_pair.cluster.name, "--yes")
    operation = Operation.objects.get(kind="failover")
    assert run(operation).status == "succeeded"
    with pytest.raises(CommandError, match="not in recovery"):
        call_command("failover", pg_pair.cluster.name, "--to", "replica", "--yes")
