"""Status migration 0006: checks that named their node and backup policy inside `config` now point at them by key,
with rows written the old way by the migration's own historical models."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.apps.registry import Apps
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from hadr_portal.status.models import Check

# whatever a test migrates to, the database ends at the latest schema, as every other test expects (`latest`)
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.usefixtures("latest")]

BEFORE = ("status", "0005_runbook_in_runbooks_dir")
AFTER = ("status", "0006_check_node_and_policy_keys")

OLD_CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "replica": ("postgres", {"cluster": "demo", "node": "replica", "lag_warning_bytes": 1024}),
    "lost-node": ("postgres", {"cluster": "demo", "node": "gone", "expected_replicas": 1}),
    "lost-cluster": ("postgres", {"cluster": "gone", "node": "primary"}),
    "by-dsn": ("postgres", {"dsn_env": "HADR_DSN_REPLICA"}),
    "nightly": ("backup", {"policy": "nightly"}),
    "lost-policy": ("backup", {"policy": "dropped"}),
    "web": ("http", {"url": "http://127.0.0.1:8001/health"}),
}


def migrate_to(target: tuple[str, str]) -> Apps:
    """Migrate one app of the test database to `target` (back or forward), every other app to its latest, and give
    the models as they are then."""
    executor = MigrationExecutor(connection)
    nodes = [node for node in executor.loader.graph.leaf_nodes() if node[0] != target[0]] + [target]
    executor.migrate(nodes)
    return MigrationExecutor(connection).loader.project_state(nodes).apps


@pytest.fixture
def latest() -> Iterator[None]:
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def old_catalog(apps: Apps) -> None:
    cluster = apps.get_model("databases", "Cluster").objects.create(name="demo", dbname="onboarding")
    for name, port in (("primary", 5441), ("replica", 5442)):
        apps.get_model("databases", "Node").objects.create(cluster=cluster, name=name, host="127.0.0.1", port=port)
    storage = apps.get_model("backups", "StorageTarget").objects.create(name="local", kind="local", config={})
    apps.get_model("backups", "BackupPolicy").objects.create(
        name="nightly", cluster=cluster, dbname="onboarding", storage=storage
    )
    service = apps.get_model("status", "Service").objects.create(name="db", display_name="Database", kind="database")
    for name, (kind, config) in OLD_CONFIGS.items():
        apps.get_model("status", "Check").objects.create(
            service=service, name=name, kind=kind, config=config, token=f"token-{name}"
        )


def test_names_become_keys_and_what_named_nothing_keeps_its_names():
    old_catalog(migrate_to(BEFORE))
    migrate_to(AFTER)

    checks = {check.name: check for check in Check.objects.select_related("node__cluster", "policy")}
    replica, nightly = checks["replica"], checks["nightly"]
    assert (str(replica.node), replica.config) == ("demo/replica", {"lag_warning_bytes": 1024})
    assert (nightly.policy.name, nightly.config) == ("nightly", {})
    for name in ("lost-node", "lost-cluster", "by-dsn", "lost-policy", "web"):
        check = checks[name]
        assert (check.node, check.policy, check.config) == (None, None, OLD_CONFIGS[name][1]), name
    # nothing lost: the check form, the catalog export and the audit log read the same settings as before
    assert {name: check.named_config() for name, check in checks.items()} == {
        name: config for name, (_, config) in OLD_CONFIGS.items()
    }


def test_backwards_the_names_return_to_config():
    old_catalog(migrate_to(BEFORE))
    migrate_to(AFTER)
    apps = migrate_to(BEFORE)
    configs = dict(apps.get_model("status", "Check").objects.values_list("name", "config"))
    assert configs == {name: config for name, (_, config) in OLD_CONFIGS.items()}
