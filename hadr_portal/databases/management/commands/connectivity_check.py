"""`manage.py connectivity_check CLUSTER [--sample-seconds N] [--wait]`."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError, CommandParser

from hadr_portal.core.cli import cli_actor, operation_wait
from hadr_portal.core.operations import OperationError
from hadr_portal.databases.models import Cluster
from hadr_portal.databases.services import connectivity_check_request


class Command(BaseCommand):
    help = "Queue a connectivity check of every node of a cluster (an operation on the ops queue)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("cluster", help="Cluster name, e.g. demo")
        parser.add_argument("--sample-seconds", type=int, default=0, help="Keep sampling replication lag (0-600)")
        parser.add_argument("--user", help="Act as this account (its roles apply); default: the portal itself")
        parser.add_argument("--wait", action="store_true", help="Show the log until the operation ends")
        parser.add_argument("--timeout", type=float, default=900, help="Seconds to wait with --wait")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            cluster = Cluster.objects.get(name=options["cluster"])
        except Cluster.DoesNotExist:
            known = ", ".join(Cluster.objects.values_list("name", flat=True)) or "none"
            raise CommandError(f"No cluster named {options['cluster']!r} (known: {known}).") from None
        try:
            operation = connectivity_check_request(
                cluster=cluster, actor=cli_actor(options["user"]), sample_seconds=options["sample_seconds"]
            )
        except (OperationError, PermissionDenied) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Operation #{operation.pk} queued: connectivity check of {cluster.name}.")
        if options["wait"]:
            operation = operation_wait(operation, timeout=options["timeout"], stream=self.stdout)
            if operation.status != "succeeded":
                raise CommandError(f"Operation #{operation.pk} {operation.status}: {operation.error}")
