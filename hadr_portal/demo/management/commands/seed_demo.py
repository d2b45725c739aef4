"""`manage.py seed_demo`: the roles and the demo catalog (everything `make run` starts, its backups included).
Idempotent."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

from hadr_portal.core.catalog import CatalogError, catalog_import
from hadr_portal.core.permissions import Role
from hadr_portal.demo.catalog import demo_catalog


class Command(BaseCommand):
    help = (
        "Create the five roles and import the demo catalog (from HADR_DEMO_NODES, HADR_*_URL, HADR_BACKUP_DIR). "
        "Safe to run again."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        for role in Role:
            Group.objects.get_or_create(name=role.value)
        try:
            # The backup policy's first run is the scheduler's to set (backups_schedule_due, on its next tick).
            report = catalog_import(demo_catalog())
        except (ValueError, CatalogError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"Roles ready. Demo catalog: {len(report.created)} created, {len(report.updated)} updated, "
            f"{len(report.unchanged)} unchanged."
        )
