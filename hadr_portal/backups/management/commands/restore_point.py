"""`manage.py restore_point CLUSTER NAME [--note TEXT] [--user USER]`: a restore point before a risky change."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError, CommandParser

from hadr_portal.backups.models import RestorePoint
from hadr_portal.backups.restore_points import NAME_RULE, RestorePointRefused, restore_point_create
from hadr_portal.core.cli import cli_actor, named
from hadr_portal.databases.models import Cluster


class Command(BaseCommand):
    help = (
        "Create a restore point (pg_create_restore_point, then a WAL switch so it is archived at once) on a "
        "cluster's primary, before a deploy or a migration; prints its LSN. A point-in-time restore can stop "
        "exactly there."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("cluster", help="Cluster name (it needs a pgBackRest backup policy)")
        parser.add_argument("name", help=f"The restore point's name: {NAME_RULE}, new on that cluster")
        parser.add_argument("--note", default="", help="What is about to change (shown beside the point)")
        parser.add_argument("--user", help="Act as this account (its roles apply); default: the portal itself")

    def handle(self, *args: Any, **options: Any) -> None:
        cluster = named(Cluster.objects.all(), options["cluster"], "cluster")
        try:
            point = restore_point_create(
                cluster=cluster,
                name=options["name"],
                note=options["note"],
                actor=cli_actor(options["user"]),
                source=RestorePoint.Source.CLI,
            )
        except (RestorePointRefused, PermissionDenied) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Restore point {point.name} created on {cluster.name} at LSN {point.lsn}.")
