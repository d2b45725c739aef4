"""`manage.py write_probe_setup CLUSTER…`: the write probe's table and its role's grants (the admin account)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from hadr_portal.core.cli import named
from hadr_portal.databases.models import Cluster
from hadr_portal.databases.writeprobe import ProbeSetupError, write_probe_setup


class Command(BaseCommand):
    help = (
        "Create hadr_probe.writes on the node of CLUSTER that takes writes, and grant the cluster's probe role "
        "(probe_user) INSERT, SELECT and DELETE on it: the write probe then writes a row a second (idempotent)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("clusters", nargs="+", help="Cluster names, e.g. demo demo-ha")

    def handle(self, *args: Any, **options: Any) -> None:
        for name in options["clusters"]:
            cluster = named(Cluster.objects.all(), name, "cluster")
            try:
                self.stdout.write(write_probe_setup(cluster))
            except ProbeSetupError as exc:
                raise CommandError(str(exc)) from None
