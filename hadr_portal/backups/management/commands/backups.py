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
        rows = [
            {
                "id": b.pk,
                "policy": b.policy.name,
                "kind": b.kind,
                "engine": b.engine,
                "status": b.status,
                "started_at": b.started_at.isoformat(),
                "finished_at": b.finished_at.isoformat() if b.finished_at else None,
                "size": b.size,
                "sha256": b.sha256,
                "storage": b.storage.name,
                "key": b.key,
                "pinned": b.pinned,
                "error": b.error,
            }
            for b in backups[: options["limit"]]
        ]
        freshness = {p.name: freshness_of(p) for p in policies}
        if options["json"]:
            document = {
                "policies": {
                    name: {"state": f.state, "message": f.message, **f.as_data()} for name, f in freshness.items()
                },
                "backups": rows,
            }
            self.stdout.write(json.dumps(document, indent=2))
            return
        for name, fresh in freshness.items():
            self.stdout.write(f"{name}: {fresh.state} · {fresh.message}")
        for row in rows:
            size = f"{row['size'] / 1e6:9.1f} MB" if row["size"] else "         —  "
            self.stdout.write(
                f"#{row['id']:<5} {row['started_at'][:19]} {row['policy']:20} {row['kind']:9} {row['status']:8} {size} "
                f"{(row['sha256'] or '')[:12]} {'pinned' if row['pinned'] else ''}"
            )
