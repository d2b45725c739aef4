"""`manage.py connectivity_check CLUSTER [--sample-seconds N] [--wait]`."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import CommandParser

from hadr_portal.core.cli import OperationCommand, named
from hadr_portal.core.models import Operation
from hadr_portal.databases.models import Cluster
from hadr_portal.databases.services import connectivity_check_request


class Command(OperationCommand[Cluster]):
    help = "Queue a connectivity check of every node of a cluster (an operation on the ops queue)."

    def arguments(self, parser: CommandParser) -> None:
        parser.add_argument("cluster", help="Cluster name, e.g. demo")
        parser.add_argument("--sample-seconds", type=int, default=0, help="Keep sampling replication lag (0-600)")

    def subject(self, options: dict[str, Any]) -> Cluster:
        return named(Cluster.objects.all(), options["cluster"], "cluster")

    def request(self, subject: Cluster, actor: User | None, options: dict[str, Any]) -> Operation:
        return connectivity_check_request(cluster=subject, actor=actor, sample_seconds=options["sample_seconds"])

    def what(self, subject: Cluster, operation: Operation) -> str:
        return f"connectivity check of {subject.name}"
