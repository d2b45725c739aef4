"""Node controllers and post-failover hooks in the catalog, and the hook at the end of a failover."""

from __future__ import annotations

import json
import os

import pytest

from hadr_portal.core.catalog import CatalogError, catalog_export, catalog_import
from hadr_portal.core.operations import operation_execute
from hadr_portal.databases.failover import failover_request
from hadr_portal.databases.models import Cluster
from tests.conftest import COMMAND_USER, command_python


def cluster_table(**extra) -> dict:
    return {
        "name": "main",
        "dbname": "app",
        "user": "postgres",
        "nodes": [
            {"name": "db1", "host": "10.0.0.11", "port": 5432, "controller": extra.pop("db1_controller", {})},
            {
                "name": "db2",
                "host": "10.0.0.12",
                "port": 5432,
                "controller": {"controller": "command", "stop": ["ssh", "db2", "stop-pg"], "timeout_seconds": 30},
            },
        ],
        **extra,
    }


@pytest.mark.django_db
def test_controllers_and_hooks_round_trip_through_the_catalog():
    hook = {"argv": ["/usr/local/bin/point-dsn", "--apply"], "timeout_seconds": 20}
    controller = {"controller": "pg_ctl", "data_directory": "/var/lib/postgresql/15/main"}
    catalog_import({"clusters": [cluster_table(post_failover_hook=hook, db1_controller=controller)]})
    cluster = Cluster.objects.get(name="main")
    assert cluster.post_failover_hook == hook
    assert cluster.nodes.get(name="db1").controller == controller
    exported = catalog_export()["clusters"][0]
    assert exported["post_failover_hook"] == hook
    assert exported["nodes"][0]["controller"] == controller
    assert exported["nodes"][1]["controller"]["stop"] == ["ssh", "db2", "stop-pg"]
    catalog_import({"clusters": [cluster_table()]})  # absent tables mean none
    assert "controller" not in catalog_export()["clusters"][0]["nodes"][0]
    assert "post_failover_hook" not in catalog_export()["clusters"][0]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"db1_controller": {"controller": "ssh"}}, "controller: unknown controller 'ssh'; one of command, pg_ctl."),
        ({"db1_controller": {"controller": "pg_ctl", "data_directory": "rel"}}, "data_directory: expected an absolute"),
        ({"db1_controller": {"controller": "command", "stop": "pg_ctl stop"}}, "stop: expected a list of strings"),
        ({"db1_controller": {"controller": "command", "timeout_seconds": 0}}, "timeout_seconds: expected a number"),
        ({"db1_controller": {"controller": "pg_ctl"}}, "data_directory: required for a node's pg_ctl controller"),
        ({"post_failover_hook": {"argv": []}}, "argv: expected a list of strings"),
        ({"post_failover_hook": {"argv": ["x"], "shell": True}}, "shell: not a setting of the post-failover hook"),
        ({"post_failover_hook": {"argv": ["x"], "env": ["HADR_SECRET_KEY"]}}, "env: HADR_SECRET_KEY may not be passed"),
        (
            {"db1_controller": {"controller": "command", "stop": ["x"], "env": ["AWS_SECRET_ACCESS_KEY"]}},
            "env: AWS_SECRET_ACCESS_KEY may not be passed to a program: AWS_* variables are AWS credentials",
        ),
    ],
)
def test_bad_controllers_and_hooks_are_refused_with_their_place(table, message):
    with pytest.raises(CatalogError) as caught:
        catalog_import({"clusters": [cluster_table(**table)]})
    assert any(message in problem and problem.startswith("clusters[0] (main)") for problem in caught.value.problems), (
        caught.value.problems
    )
    assert not Cluster.objects.exists()


@pytest.mark.slow
def test_the_post_failover_hook_gets_the_new_primary_and_its_failure_is_reported(pg_pair, exec_dir, monkeypatch):
    out = exec_dir / "hook.json"
    script = (
        "import getpass, json, os, sys; "
        "seen = {k: v for k, v in os.environ.items() if k.startswith(('HADR_', 'DNS_'))}; seen['user'] = getpass.getuser(); "
        f"json.dump(seen, open({str(out)!r}, 'w')); "
        "print('dsn updated')"
    )
    monkeypatch.setenv("DNS_ZONE", "example.internal")
    hook = {"argv": [command_python(), "-c", script], "env": ["DNS_ZONE"]}
    Cluster.objects.filter(pk=pg_pair.cluster.pk).update(post_failover_hook=hook)
    pg_pair.primary.stop(mode="immediate")
    operation = operation_execute(operation_id=failover_request(cluster=pg_pair.cluster, actor=None).pk)
    assert operation.status == "succeeded", operation.error
    seen = json.loads(out.read_text())
    assert seen["HADR_NEW_PRIMARY"] == "replica" and seen["HADR_OLD_PRIMARY"] == "primary"
    assert seen["HADR_NEW_PRIMARY_PORT"] == str(pg_pair.replica.port)
    assert seen["DNS_ZONE"] == "example.internal"  # the one variable it names, and none of the portal's own
    assert not {"HADR_SECRET_KEY", "HADR_DATABASE_URL"} & seen.keys()
    if os.geteuid() == 0:
        assert seen["user"] == COMMAND_USER
    assert operation.result["hook"] == "dsn updated"


@pytest.mark.slow
def test_a_failing_hook_fails_the_operation_saying_the_promotion_happened(pg_pair):
    Cluster.objects.filter(pk=pg_pair.cluster.pk).update(post_failover_hook={"argv": ["/nonexistent/update-dns"]})
    pg_pair.primary.stop(mode="immediate")
    operation = operation_execute(operation_id=failover_request(cluster=pg_pair.cluster, actor=None).pk)
    assert operation.status == "failed"
    assert "replica is the new primary and takes writes, but the post-failover hook failed" in operation.error
    assert "program not found" in operation.error
    assert Cluster.objects.get(pk=pg_pair.cluster.pk).primary.name == "replica"


def test_demo_nodes_with_a_data_directory_get_a_pg_ctl_controller():
    from hadr_portal.demo.catalog import demo_catalog

    demo = demo_catalog({"HADR_DEMO_NODES": "primary=127.0.0.1:5441@/srv/pg/primary,replica=127.0.0.1:5442"})
    nodes = {node["name"]: node for node in demo["clusters"][0]["nodes"]}
    assert nodes["primary"]["controller"] == {
        "controller": "pg_ctl",
        "data_directory": "/srv/pg/primary",
        "socket_directory": "/srv/pg",  # the servers' Unix sockets, where pgBackRest talks to them
    }
    assert "controller" not in nodes["replica"]
    # pgBackRest backs up from the data directory: a cluster not wholly on this machine has no physical policy
    assert [policy["name"] for policy in demo["backup_policies"]] == ["demo-onboarding"]
    with pytest.raises(ValueError, match="is not name=host:port"):
        demo_catalog({"HADR_DEMO_NODES": "primary=127.0.0.1@/srv"})
