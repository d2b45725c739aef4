"""Metrics migration 0003: funnels that named their cluster and node now point at them by key, with rows written
the old way by the migration's own historical models."""

from __future__ import annotations

from django.apps.registry import Apps

from hadr_portal.metrics.models import Funnel
from tests.status.test_migrations import latest, migrate_to, pytestmark  # noqa: F401 (the fixture pytestmark uses)

BEFORE = ("metrics", "0002_funnel_dsn_env_prefix")
AFTER = ("metrics", "0003_funnel_cluster_and_node_keys")

# name: (cluster, node) as the old rows named them
OLD_NAMES = {
    "pinned": ("demo", "replica"),
    "any-replica": ("demo", ""),
    "lost-node": ("demo", "gone"),
    "lost-cluster": ("gone", ""),
    "by-dsn": ("", ""),
}


def old_funnels(apps: Apps) -> None:
    cluster = apps.get_model("databases", "Cluster").objects.create(name="demo", dbname="onboarding")
    apps.get_model("databases", "Node").objects.create(cluster=cluster, name="replica", host="127.0.0.1", port=5442)
    other = apps.get_model("databases", "Cluster").objects.create(name="other", dbname="onboarding")
    apps.get_model("databases", "Node").objects.create(cluster=other, name="gone", host="127.0.0.1", port=5443)
    for name, (cluster_name, node_name) in OLD_NAMES.items():
        apps.get_model("metrics", "Funnel").objects.create(
            name=name,
            steps=["signed_up", "activated"],
            cluster=cluster_name,
            node=node_name,
            dsn_env="HADR_DSN_REPLICA" if not cluster_name else "",
            token=f"token-{name}",
        )


def test_names_become_keys_and_a_missing_node_unpins_the_funnel():
    old_funnels(migrate_to(BEFORE))
    migrate_to(AFTER)

    read = {
        funnel.name: (funnel.cluster and funnel.cluster.name, funnel.node and str(funnel.node))
        for funnel in Funnel.objects.select_related("cluster", "node__cluster")
    }
    assert read == {
        "pinned": ("demo", "demo/replica"),
        "any-replica": ("demo", None),
        "lost-node": ("demo", None),  # not other/gone: a node is looked for in the funnel's own cluster only
        "lost-cluster": (None, None),
        "by-dsn": (None, None),
    }


def test_backwards_the_names_return():
    old_funnels(migrate_to(BEFORE))
    migrate_to(AFTER)
    apps = migrate_to(BEFORE)
    names = {
        name: (cluster, node)
        for name, cluster, node in apps.get_model("metrics", "Funnel").objects.values_list("name", "cluster", "node")
    }
    assert names == OLD_NAMES | {"lost-node": ("demo", ""), "lost-cluster": ("", "")}
