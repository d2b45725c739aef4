"""`manage.py seed_demo`: put the local demo environment into the catalog (idempotent)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError, CommandParser

from hadr_portal.core.permissions import Role
from hadr_portal.databases.services import cluster_upsert


class Command(BaseCommand):
    help = "Create the roles and the demo cluster (from HADR_DEMO_NODES) in the catalog. Safe to run again."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--cluster", default="demo", help="Cluster name (default: demo)")
        parser.add_argument("--dbname", default="onboarding", help="Database the portal connects to")
        parser.add_argument("--password-env", default="HADR_DEMO_PASSWORD", help="Variable holding the password")

    def handle(self, *args: Any, **options: Any) -> None:
        for role in Role:
            Group.objects.get_or_create(name=role.value)
        nodes: dict[str, tuple[str, int]] = {}
        for item in settings.DEMO_CLUSTER_NODES:
            name, _, address = item.partition("=")
            host, _, port = address.rpartition(":")
            if not (name and host and port.isdigit()):
                raise CommandError(f"HADR_DEMO_NODES: {item!r} is not name=host:port")
            nodes[name] = (host, int(port))
        if not nodes:
            self.stdout.write("Roles ready. HADR_DEMO_NODES is empty: no demo cluster seeded.")
            return
        cluster = cluster_upsert(
            name=options["cluster"],
            nodes=nodes,
            description="Local demo cluster: the onboarding application's primary and streaming replica",
            dbname=options["dbname"],
            user="postgres",
            password_env=options["password_env"],
        )
        self.stdout.write(f"Roles ready. Cluster {cluster.name}: {', '.join(nodes)}.")
