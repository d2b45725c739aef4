"""`manage.py prune_backups [--policy NAME] [--dry-run]`."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from hadr_portal.backups.models import BackupPolicy
from hadr_portal.backups.services import backups_prune


class Command(BaseCommand):
    help = "Delete the backups that retention no longer keeps (--dry-run: only list them, with why)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--policy")
        parser.add_argument("--dry-run", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        policies = BackupPolicy.objects.all()
        if options["policy"]:
            policies = policies.filter(name=options["policy"])
        total = 0
        for policy in policies:
            plan = backups_prune(policy=policy, dry_run=options["dry_run"])
            for decision in plan:
                backup = decision.backup
                verb = "would delete" if options["dry_run"] else "deleted"
                self.stdout.write(
                    f"{policy.name}: {verb} #{backup.pk} {backup.started_at:%Y-%m-%d %H:%M} — {decision.reason}"
                )
            total += len(plan)
        self.stdout.write(f"{total} backup(s) {'would be ' if options['dry_run'] else ''}deleted.")
