"""`manage.py backup POLICY [--kind manual] [--wait]`."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError, CommandParser

from hadr_portal.backups.models import Backup, BackupPolicy
from hadr_portal.backups.services import backup_request
from hadr_portal.core.cli import cli_actor, named, operation_wait
from hadr_portal.core.operations import OperationConflict, OperationError


class Command(BaseCommand):
    help = "Back up a database now (an operation on the ops queue), by its backup policy's name."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("policy", help="Backup policy name (see `manage.py backups`)")
        parser.add_argument("--kind", default="manual", choices=Backup.Kind.values)
        parser.add_argument("--user", help="Act as this account (its roles apply); default: the portal itself")
        parser.add_argument("--wait", action="store_true", help="Show the log until the backup ends")
        parser.add_argument("--timeout", type=float, default=6 * 3600)
        parser.add_argument("--if-missing", action="store_true", help="Only if the policy has no good backup yet")

    def handle(self, *args: Any, **options: Any) -> None:
        policy = named(BackupPolicy.objects.select_related("cluster"), options["policy"], "backup policy")
        if options["if_missing"] and policy.backups.filter(status=Backup.Status.GOOD).exists():
            self.stdout.write(f"{policy.name} already has a good backup: nothing to do.")
            return
        try:
            operation = backup_request(policy=policy, actor=cli_actor(options["user"]), kind=options["kind"])
        except OperationConflict as exc:
            if options["if_missing"]:
                self.stdout.write(f"{policy.name}: {exc}")
                return
            raise CommandError(str(exc)) from None
        except (OperationError, PermissionDenied) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"Operation #{operation.pk} queued: {options['kind']} backup of {policy.cluster.name}/{policy.dbname}."
        )
        if options["wait"]:
            operation = operation_wait(operation, timeout=options["timeout"], stream=self.stdout)
            if operation.status != "succeeded":
                raise CommandError(f"Backup failed ({operation.status}): {operation.error}")
            result = operation.result
            self.stdout.write(f"Good: {result['key']} · {result['size']} bytes · sha256 {result['sha256']}")
