"""The check form: the node a postgres check probes and the policy a backup check watches are typed by name, as
in the catalog file, and stored as the check's keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.urls import reverse

from hadr_portal.backups.models import BackupPolicy, StorageTarget
from hadr_portal.core.models import AuditEntry
from hadr_portal.core.permissions import Role
from hadr_portal.databases.models import Cluster, Node
from hadr_portal.status.models import Check
from tests.status.factories import make_service

pytestmark = pytest.mark.django_db

COMMON = {"enabled": "on", "interval_seconds": "30", "timeout_seconds": "5", "failures_before_down": "2"}


@pytest.fixture
def catalog(tmp_path: Path) -> BackupPolicy:
    demo = Cluster.objects.create(name="demo", dbname="onboarding")
    for name, port in (("primary", 5441), ("replica", 5442)):
        Node.objects.create(cluster=demo, name=name, host="127.0.0.1", port=port)
    storage = StorageTarget.objects.create(name="local", kind="local", config={"path": str(tmp_path)})
    make_service("db", kind="database")
    return BackupPolicy.objects.create(name="nightly", cluster=demo, dbname="onboarding", storage=storage)


def test_names_in_the_form_keys_in_the_check_names_in_the_audit(client_as, catalog):
    devops = client_as(Role.DEVOPS)
    new = reverse("status:check-new", kwargs={"name": "db"})

    refused = devops.post(new, COMMON | {"name": "pg", "kind": "postgres", "cluster": "demo", "node": "gone"})
    assert "No node &#x27;gone&#x27; in cluster &#x27;demo&#x27;." in refused.content.decode()
    assert not Check.objects.exists()

    saved = devops.post(
        new, COMMON | {"name": "pg", "kind": "postgres", "cluster": "demo", "node": "replica", "lag_warning_bytes": "9"}
    )
    assert saved.status_code == 302
    check = Check.objects.get(name="pg")
    assert (str(check.node), check.policy, check.config) == ("demo/replica", None, {"lag_warning_bytes": 9})
    audited = AuditEntry.objects.get(action="catalog.check.create").parameters
    assert (audited["cluster"], audited["node"]) == ("demo", "replica")

    edit = reverse("status:check-edit", kwargs={"name": "db", "check_id": check.pk})
    page = devops.get(edit).content.decode()
    assert 'name="cluster" value="demo"' in page and 'name="node" value="replica"' in page

    devops.post(edit, COMMON | {"name": "pg", "kind": "backup", "policy": "nightly"})
    check.refresh_from_db()
    assert (check.node, check.policy, check.config) == (None, catalog, {})
    assert 'name="policy" value="nightly"' in devops.get(edit).content.decode()
