"""`manage.py connectivity_check CLUSTER [--sample-seconds N] [--wait]`."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from hadr_portal.core.cli import cli_actor, named, operation_arguments, operation_start
from hadr_portal.databases.models import Cluster
from hadr_portal.databases.services import connectivity_check_request


class Command(BaseCommand):
    help = "Queue a connectivity check of every node of a cluster (an operation on the ops queue)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("cluster", help="Cluster name, e.g. demo")
        parser.add_argument("--sample-seconds", type=int, default=0, help="Keep sampling replication lag (0-600)")
        operation_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        cluster = named(Cluster.objects.all(), options["cluster"], "cluster")
        operation_start(
            self,
            lambda: connectivity_check_request(
                cluster=cluster, actor=cli_actor(options["user"]), sample_seconds=options["sample_seconds"]
            ),
            f"connectivity check of {cluster.name}",
            options,
        )
