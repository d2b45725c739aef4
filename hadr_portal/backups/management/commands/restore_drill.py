"""`manage.py restore_drill DATABASE [--cluster-loss] [--wait]`."""

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
        "Run a restore drill now: the newest good backup restored into a scratch database (a pgBackRest policy: a "
        "scratch instance at a random point of the last day, proved exact by the marker rows), the policy's "
        "verification queries and amcheck run, the duration recorded, the scratch copy removed."
    )

    def arguments(self, parser: CommandParser) -> None:
        parser.add_argument("database", help="Backup policy name, or cluster/dbname (see `manage.py backups`)")
        parser.add_argument(
            "--cluster-loss",
            action="store_true",
            help="pgBackRest policies: restore the latest point from the repository alone and report the loss",
        )

    def subject(self, options: dict[str, Any]) -> BackupPolicy:
        return _policy(options["database"])

    def request(self, subject: BackupPolicy, actor: User | None, options: dict[str, Any]) -> Operation:
        return drill_request(policy=subject, actor=actor, cluster_loss=options["cluster_loss"])

    def what(self, subject: BackupPolicy, operation: Operation) -> str:
        return f"restore drill of {subject.cluster.name}/{subject.dbname}"

    def finished(self, subject: BackupPolicy, operation: Operation, options: dict[str, Any]) -> None:
        restore = Restore.objects.filter(operation=operation).first()
        if options["wait"] and restore is not None and restore.rto_seconds is not None:
            self.stdout.write(f"Verified in {restore.rto_seconds:.1f} s (restore drill #{restore.pk}).")
            if restore.achieved_rpo_seconds is not None:
                self.stdout.write(f"Committed seconds not recovered: {restore.achieved_rpo_seconds:.1f} s.")


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
