"""The catalog file names the node a check probes, the policy it watches and the cluster and node a funnel reads;
the database keeps them as keys. Importing sets the keys, pruning keeps its order, and a name of nothing is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hadr_portal.core.catalog import CatalogError, catalog_export, catalog_import
from hadr_portal.demo.catalog import DEMO_FUNNEL
from hadr_portal.metrics.models import Funnel
from hadr_portal.status.models import Check

pytestmark = pytest.mark.django_db


def catalog(tmp_path: Path, *, nodes: tuple[str, ...] = ("primary", "replica"), **sections: Any) -> dict[str, Any]:
    cluster = {
        "name": "demo",
        "dbname": "onboarding",
        "nodes": [{"name": name, "host": "127.0.0.1", "port": 5441 + n} for n, name in enumerate(nodes)],
    }
    policy = {"name": "nightly", "cluster": "demo", "dbname": "onboarding", "storage": "local"}
    checks = [
        {"name": "pg", "kind": "postgres", "config": {"cluster": "demo", "node": "replica"}},
        {"name": "backup", "kind": "backup", "config": {"policy": "nightly"}},
    ]
    return {
        "clusters": [cluster],
        "storage_targets": [{"name": "local", "kind": "local", "config": {"path": str(tmp_path)}}],
        "backup_policies": [policy],
        "services": [{"name": "db", "display_name": "Database", "kind": "database", "checks": checks}],
        "funnels": [{**DEMO_FUNNEL, "node": "replica"}],
    } | sections


def test_an_import_keys_the_rows_the_file_names_and_exports_the_names_again(tmp_path):
    data = catalog(tmp_path)
    catalog_import(data)
    checks = {check.name: check for check in Check.objects.select_related("node__cluster", "policy")}
    assert (str(checks["pg"].node), checks["pg"].config) == ("demo/replica", {})
    assert (checks["backup"].policy.name, checks["backup"].config) == ("nightly", {})
    funnel = Funnel.objects.select_related("cluster", "node__cluster").get()
    assert (funnel.cluster.name, str(funnel.node)) == ("demo", "demo/replica")

    exported = catalog_export()
    assert [check["config"] for check in exported["services"][0]["checks"]] == [
        {"policy": "nightly"},
        {"cluster": "demo", "node": "replica"},
    ]
    assert (exported["funnels"][0]["cluster"], exported["funnels"][0]["node"]) == ("demo", "replica")
    report = catalog_import(data)
    assert not report.created and not report.updated


def test_pruning_a_node_with_the_check_and_pin_naming_it_removes_them_and_refuses_otherwise(tmp_path):
    catalog_import(catalog(tmp_path))
    moved = catalog(tmp_path, nodes=("primary",))
    kept_check = moved["services"][0]["checks"]

    with pytest.raises(CatalogError) as refused:
        catalog_import(moved, prune=True)
    assert refused.value.problems == [
        "services[0] (db).checks[0] (pg).config.node: No node 'replica' in cluster 'demo'.",
        "funnels[0] (onboarding).node: No node 'replica' in cluster 'demo'.",
    ]
    assert str(Check.objects.get(name="pg").node) == "demo/replica"  # nothing changed

    kept_check[0]["config"] = {"cluster": "demo", "node": "primary"}
    moved["funnels"] = [DEMO_FUNNEL]
    report = catalog_import(moved, prune=True)
    assert report.deleted == ["node demo/replica"]
    assert str(Check.objects.get(name="pg").node) == "demo/primary"
    assert Funnel.objects.get().node is None  # reads whichever node is the replica


def test_a_funnel_node_needs_its_cluster(tmp_path):
    with pytest.raises(CatalogError) as refused:
        catalog_import(
            catalog(tmp_path, funnels=[{**DEMO_FUNNEL, "cluster": "", "dsn_env": "HADR_DSN_A", "node": "x"}])
        )
    assert refused.value.problems == [
        "funnels[0] (onboarding).node: A node is read only as part of its cluster: name the cluster too."
    ]
