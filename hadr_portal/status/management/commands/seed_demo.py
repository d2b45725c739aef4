"""`manage.py seed_demo`: the roles and the demo catalog (everything `make run` starts). Idempotent."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

from hadr_portal.backups.demo import backups_ensure, demo_backups
from hadr_portal.core.permissions import Role
from hadr_portal.databases.services import cluster_upsert
from hadr_portal.status.catalog import CatalogError, catalog_import
from hadr_portal.status.demo import demo_catalog


class Command(BaseCommand):
    help = "Create the five roles and import the demo catalog (from HADR_DEMO_NODES, HADR_*_URL). Safe to run again."

    def handle(self, *args: Any, **options: Any) -> None:
        for role in Role:
            Group.objects.get_or_create(name=role.value)
        try:
            catalog = demo_catalog()
            backups = demo_backups()
            if catalog["clusters"]:
                # The backup policy names the cluster, and the catalog's freshness check names the policy.
                cluster = catalog["clusters"][0]
                cluster_upsert(
                    name=cluster["name"],
                    nodes={n["name"]: (n["host"], n["port"]) for n in cluster["nodes"]},
                    **{k: v for k, v in cluster.items() if k not in ("name", "nodes")},
                )
                backups_ensure(backups)
            report = catalog_import(catalog)
        except (ValueError, CatalogError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"Roles ready. Demo catalog: {len(report.created)} created, {len(report.updated)} updated, "
            f"{len(report.unchanged)} unchanged."
        )
