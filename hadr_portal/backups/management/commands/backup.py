"""`manage.py backup POLICY [--kind manual] [--type full|diff|incr] [--wait]`."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import CommandParser

from hadr_portal.backups.models import Backup, BackupPolicy
from hadr_portal.backups.services import backup_request
from hadr_portal.core.cli import OperationCommand, named
from hadr_portal.core.models import Operation
from hadr_portal.core.operation_kinds import OperationConflict


class Command(OperationCommand[BackupPolicy]):
    help = "Back up a database now (an operation on the ops queue), by its backup policy's name."
    wait_help = "Show the log until the backup ends"
    timeout = 6 * 3600.0

    def arguments(self, parser: CommandParser) -> None:
        parser.add_argument("policy", help="Backup policy name (see `manage.py backups`)")
        parser.add_argument("--kind", default="manual", choices=Backup.Kind.values)
        parser.add_argument(
            "--type",
            dest="set_type",
            default="",
            choices=BackupPolicy.SetType.values,
            help="pgBackRest policies: a full, differential or incremental set (default: the policy's)",
        )
        parser.add_argument("--if-missing", action="store_true", help="Only if the policy has no good backup yet")

    def subject(self, options: dict[str, Any]) -> BackupPolicy | None:
        policy = named(BackupPolicy.objects.select_related("cluster"), options["policy"], "backup policy")
        if options["if_missing"] and policy.backups.filter(status=Backup.Status.GOOD).exists():
            self.stdout.write(f"{policy.name} already has a good backup: nothing to do.")
            return None
        return policy

    def request(self, subject: BackupPolicy, actor: User | None, options: dict[str, Any]) -> Operation | None:
        try:
            return backup_request(policy=subject, actor=actor, kind=options["kind"], set_type=options["set_type"])
        except OperationConflict as exc:
            if not options["if_missing"]:
                raise
            self.stdout.write(f"{subject.name}: {exc}")
            return None

    def what(self, subject: BackupPolicy, operation: Operation) -> str:
        return f"{operation.parameters['kind']} backup of {operation.parameters['database']}"

    def failure(self, operation: Operation) -> str:
        return f"Backup failed ({operation.status}): {operation.error}"

    def finished(self, subject: BackupPolicy, operation: Operation, options: dict[str, Any]) -> None:
        if options["wait"]:
            result = operation.result
            checksum = (
                f"sha256 {result['sha256']}" if result.get("sha256") else "checksummed by pgBackRest, file by file"
            )
            self.stdout.write(f"Good: {result['key']} · {result['size']} bytes · {checksum}")
