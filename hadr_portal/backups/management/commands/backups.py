"""`manage.py backups [--policy NAME] [--json]`: the backup history."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from hadr_portal.backups.models import Backup, BackupPolicy
from hadr_portal.backups.selectors import freshness_of


class Command(BaseCommand):
    help = "List backups, newest first, with each policy's freshness against its RPO."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--policy")
        parser.add_argument("--limit", type=int, default=50)
        parser.add_argument("--json", action="store_true", help="One JSON document (for scripts)")

    def handle(self, *args: Any, **options: Any) -> None:
        backups = Backup.objects.select_related("policy", "storage").order_by("-started_at")
        policies = BackupPolicy.objects.all()
        if options["policy"]:
            backups = backups.filter(policy__name=options["policy"])
            policies = policies.filter(name=options["policy"])
        listed = list(backups[: options["limit"]])
        freshness = {p.name: freshness_of(p) for p in policies}
        if options["json"]:
            document = {
                "policies": {
                    name: {"state": f.state, "message": f.message, **f.as_data()} for name, f in freshness.items()
                },
                "backups": [_row(backup) for backup in listed],
            }
            self.stdout.write(json.dumps(document, indent=2))
            return
        for name, fresh in freshness.items():
            self.stdout.write(f"{name}: {fresh.state} · {fresh.message}")
        for backup in listed:
            size = f"{backup.size / 1e6:9.1f} MB" if backup.size else "         —  "
            self.stdout.write(
                f"#{backup.pk:<5} {backup.started_at.isoformat()[:19]} {backup.policy.name:20} {backup.kind:9} "
                f"{backup.status:8} {size} {backup.sha256[:12]} {'pinned' if backup.pinned else ''}"
            )


def _row(backup: Backup) -> dict[str, Any]:
    """One backup in the JSON document, the shape scripts read."""
    return {
        "id": backup.pk,
        "policy": backup.policy.name,
        "kind": backup.kind,
        "engine": backup.engine,
        "status": backup.status,
        "started_at": backup.started_at.isoformat(),
        "finished_at": backup.finished_at.isoformat() if backup.finished_at else None,
        "size": backup.size,
        "sha256": backup.sha256,
        "storage": backup.storage.name,
        "key": backup.key,
        "pinned": backup.pinned,
        "error": backup.error,
    }
