"""`manage.py rebuild_replica CLUSTER NODE [--wait]`."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import CommandParser

from hadr_portal.core.cli import OperationCommand, named
from hadr_portal.core.models import Operation
from hadr_portal.databases.models import Cluster, Node
from hadr_portal.databases.rebuild import rebuild_request


class Command(OperationCommand[Node]):
    help = (
        "Turn NODE into a streaming replica of the cluster's current primary (pg_rewind, else a fresh"
        " pg_basebackup), through the node's controller. NODE's data is replaced."
    )

    def arguments(self, parser: CommandParser) -> None:
        parser.add_argument("cluster", help="Cluster name, e.g. demo")
        parser.add_argument("node", help="The node to rebuild, e.g. the old primary after a failover")

    def subject(self, options: dict[str, Any]) -> Node:
        cluster = named(Cluster.objects.all(), options["cluster"], "cluster")
        return named(cluster.nodes.all(), options["node"], f"node in cluster {cluster.name}")

    def request(self, subject: Node, actor: User | None, options: dict[str, Any]) -> Operation:
        return rebuild_request(cluster=subject.cluster, node=subject, actor=actor)

    def what(self, subject: Node, operation: Operation) -> str:
        return f"rebuild of {subject.cluster.name}/{subject.name} as a replica"
