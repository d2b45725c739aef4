"""`manage.py restore_drill DATABASE [--wait]`."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import CommandError, CommandParser

from hadr_portal.backups.models import BackupPolicy, Restore
from hadr_portal.backups.wizard import drill_request
from hadr_portal.core.cli import OperationCommand
from hadr_portal.core.models import Operation


class Command(OperationCommand[BackupPolicy]):
    help = (
        "Run a restore drill now: the newest good backup restored into a scratch database (or server), the "
        "policy's verification queries and amcheck run, the duration recorded, the scratch copy dropped."
    )

    def arguments(self, parser: CommandParser) -> None:
        parser.add_argument("database", help="Backup policy name, or cluster/dbname (see `manage.py backups`)")

    def subject(self, options: dict[str, Any]) -> BackupPolicy:
        return _policy(options["database"])

    def request(self, subject: BackupPolicy, actor: User | None, options: dict[str, Any]) -> Operation:
        return drill_request(policy=subject, actor=actor)

    def what(self, subject: BackupPolicy, operation: Operation) -> str:
        return f"restore drill of {subject.cluster.name}/{subject.dbname}"

    def finished(self, subject: BackupPolicy, operation: Operation, options: dict[str, Any]) -> None:
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
