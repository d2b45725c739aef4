"""`manage.py rebuild_replica CLUSTER NODE [--wait]`."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from hadr_portal.core.cli import cli_actor, named, operation_arguments, operation_start
from hadr_portal.databases.models import Cluster
from hadr_portal.databases.rebuild import rebuild_request


class Command(BaseCommand):
    help = (
        "Turn NODE into a streaming replica of the cluster's current primary (pg_rewind, else a fresh"
        " pg_basebackup), through the node's controller. NODE's data is replaced."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("cluster", help="Cluster name, e.g. demo")
        parser.add_argument("node", help="The node to rebuild, e.g. the old primary after a failover")
        operation_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        cluster = named(Cluster.objects.all(), options["cluster"], "cluster")
        node = named(cluster.nodes.all(), options["node"], f"node in cluster {cluster.name}")
        operation_start(
            self,
            lambda: rebuild_request(cluster=cluster, node=node, actor=cli_actor(options["user"])),
            f"rebuild of {cluster.name}/{node.name} as a replica",
            options,
        )
