"""The demo environment's backups: a local directory and a daily policy for the onboarding database."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.conf import settings

from hadr_portal.databases.models import Cluster

from .models import BackupPolicy, StorageTarget


def demo_backups(environ: dict[str, str] | None = None) -> dict[str, Any]:
    env = dict(os.environ if environ is None else environ)
    directory = env.get("HADR_BACKUP_DIR") or str(Path(settings.BASE_DIR) / ".run" / "backups")
    return {
        "storage": {"name": "local", "kind": "local", "config": {"path": directory}},
        "policy": {
            "name": "demo-onboarding",
            "cluster": "demo",
            "dbname": "onboarding",
            "engine": "pg_dump",
            "storage": "local",
            "schedule": env.get("HADR_DEMO_BACKUP_SCHEDULE", "0 2 * * *"),
            "keep_scheduled_days": 7,
            "keep_manual_days": 30,
            "rpo_minutes": 1440,
            "grace_minutes": 60,
        },
    }


def backups_ensure(spec: dict[str, Any]) -> BackupPolicy:
    """Create or update the storage target and the policy (idempotent)."""
    storage, _ = StorageTarget.objects.update_or_create(
        name=spec["storage"]["name"], defaults={"kind": spec["storage"]["kind"], "config": spec["storage"]["config"]}
    )
    fields = dict(spec["policy"])
    name = fields.pop("name")
    fields["cluster"] = Cluster.objects.get(name=fields.pop("cluster"))
    fields["storage"] = (
        storage if fields.pop("storage") == storage.name else StorageTarget.objects.get(name=spec["policy"]["storage"])
    )
    policy, _ = BackupPolicy.objects.update_or_create(name=name, defaults=fields)
    if policy.next_run_at is None:
        from django.utils import timezone

        BackupPolicy.objects.filter(pk=policy.pk).update(next_run_at=policy.next_after(timezone.now()))
    return policy
