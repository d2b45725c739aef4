"""`manage.py pitr_setup POLICY [--no-check]`: point a cluster's WAL archiving at its pgBackRest stanza."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from hadr_portal.backups.markers import markers_table_ensure
from hadr_portal.backups.models import BackupPolicy
from hadr_portal.backups.stanza import StanzaProblem, stanza_setup


class Command(BaseCommand):
    help = (
        "Write the pgBackRest stanza of a physical (pgbackrest) policy from the catalog, create it in every "
        "repository, set every node's archive_command and archive_timeout (ALTER SYSTEM + reload), and run "
        "pgBackRest's check. Safe to run again; `make up` runs it for the demo."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("policy", help="a backup policy with engine pgbackrest")
        parser.add_argument("--no-check", action="store_true", help="skip pgBackRest's WAL-switch check")

    def handle(self, *args: Any, **options: Any) -> None:
        policy = (
            BackupPolicy.objects.select_related("cluster", "storage", "copy_storage")
            .filter(name=options["policy"])
            .first()
        )
        if policy is None:
            names = ", ".join(BackupPolicy.objects.filter(engine="pgbackrest").values_list("name", flat=True))
            raise CommandError(f"No backup policy named {options['policy']!r}. pgBackRest policies: {names or 'none'}.")
        try:
            stanza = stanza_setup(policy, check=not options["no_check"], log=self.stdout.write)
        except StanzaProblem as exc:
            raise CommandError(str(exc)) from None
        markers_table_ensure(policy)  # drills' marker rows, and amcheck for every restored copy
        self.stdout.write(f"  {policy.dbname}: marker table and amcheck in place")
        self.stdout.write(f"Stanza {stanza.name} ready. By hand, as postgres: {stanza.command_line('info')}")
