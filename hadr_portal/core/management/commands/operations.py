"""`manage.py operations list|show ID|cancel ID|reap`."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError, CommandParser

from hadr_portal.core.cli import cli_actor
from hadr_portal.core.models import Operation
from hadr_portal.core.operation_kinds import OperationError
from hadr_portal.core.operations import operation_cancel, operations_reap


class Command(BaseCommand):
    help = "List, inspect and cancel operations; run the reaper once."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        listing = sub.add_parser("list", help="The newest operations")
        listing.add_argument("--active", action="store_true", help="Only queued or running ones")
        listing.add_argument("--limit", type=int, default=20)
        show = sub.add_parser("show", help="One operation with its log")
        show.add_argument("id", type=int)
        cancel = sub.add_parser("cancel", help="Cancel a queued operation (or ask a running one to stop)")
        cancel.add_argument("id", type=int)
        cancel.add_argument("--user", required=True, help="The account cancelling (its roles apply)")
        sub.add_parser("reap", help="Fail running operations whose worker stopped heartbeating, now")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "list":
            operations = Operation.objects.all()
            if options["active"]:
                operations = operations.filter(status__in=Operation.ACTIVE)
            for op in operations[: options["limit"]]:
                self.stdout.write(
                    f"#{op.pk:<6} {op.created_at:%Y-%m-%d %H:%M:%S} {op.status:10} {op.progress:3}% "
                    f"{op.kind:20} {op.target:24} {op.error[:60]}"
                )
        elif action == "show":
            op = self._get(options["id"])
            self.stdout.write(f"#{op.pk} {op.kind_label} on {op.target}: {op.status} ({op.progress}%)")
            if op.error:
                self.stdout.write(f"error: {op.error}")
            for line in op.log_lines.all():
                self.stdout.write(f"{line.at:%H:%M:%S} {line.level:7} {line.message}")
        elif action == "cancel":
            op = self._get(options["id"])
            actor = cli_actor(options["user"])
            assert actor is not None
            try:
                op = operation_cancel(operation_id=op.pk, actor=actor)
            except (OperationError, PermissionDenied) as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(f"#{op.pk}: {op.status}{' (stop requested)' if op.cancel_requested else ''}")
        elif action == "reap":
            reaped = operations_reap()
            self.stdout.write(f"Reaped: {', '.join(f'#{pk}' for pk in reaped) or 'nothing'}")

    def _get(self, pk: int) -> Operation:
        try:
            return Operation.objects.get(pk=pk)
        except Operation.DoesNotExist:
            raise CommandError(f"No operation #{pk}.") from None
