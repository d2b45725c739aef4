"""`manage.py restore_drill DATABASE [--wait]`."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from hadr_portal.backups.models import BackupPolicy, Restore
from hadr_portal.backups.wizard import drill_request
from hadr_portal.core.cli import cli_actor, operation_arguments, operation_start


class Command(BaseCommand):
    help = (
        "Run a restore drill now: the newest good backup restored into a scratch database (or server), the "
        "policy's verification queries and amcheck run, the duration recorded, the scratch copy dropped."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("database", help="Backup policy name, or cluster/dbname (see `manage.py backups`)")
        operation_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        policy = _policy(options["database"])
        operation = operation_start(
            self,
            lambda: drill_request(policy=policy, actor=cli_actor(options["user"])),
            f"restore drill of {policy.cluster.name}/{policy.dbname}",
            options,
        )
        restore = Restore.objects.filter(operation=operation).first()
        if options["wait"] and restore is not None and restore.rto_seconds is not None:
            self.stdout.write(f"Verified in {restore.rto_seconds:.1f} s (restore drill #{restore.pk}).")


def _policy(database: str) -> BackupPolicy:
    policies = BackupPolicy.objects.select_related("cluster")
    found = policies.filter(name=database).first()
    if found is None and "/" in database:
        cluster, _, dbname = database.partition("/")
        found = policies.filter(cluster__name=cluster, dbname=dbname).order_by("name").first()
    if found is None:
        known = ", ".join(f"{p.name} ({p.cluster.name}/{p.dbname})" for p in policies) or "none"
        raise CommandError(f"No backup policy for {database!r} (known: {known}).")
    return found
