"""`manage.py restore BACKUP_ID --target-database NAME [--replace --yes] [--wait]`."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError, CommandParser

from hadr_portal.backups.models import Backup, Restore
from hadr_portal.backups.wizard import (
    restore_backup_set,
    restore_draft_start,
    restore_preflight_run,
    restore_request,
    restore_situation_set,
    restore_target_set,
)
from hadr_portal.core.cli import cli_actor, named, operation_arguments, operation_start
from hadr_portal.core.findings import blockers
from hadr_portal.core.operations import OperationError

MARKS = {"ok": "✔", "warning": "⚠", "blocker": "✖"}


class Command(BaseCommand):
    help = (
        "Restore a backup (an operation on the ops queue): into a new database, or with --replace over the "
        "production database (safety backup first, swapped in only once verified, the old one kept renamed). "
        "A physical backup is restored as a new server (--data-directory, --port). The pre-flight is printed first."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("backup", help="Backup id (see `manage.py backups`)")
        parser.add_argument("--target-database", help="The new database's name (with --replace: the production one)")
        parser.add_argument("--replace", action="store_true", help="Replace the production database")
        parser.add_argument("--yes", action="store_true", help="Confirm --replace (it ends the database's sessions)")
        parser.add_argument("--situation", default="corruption", choices=Restore.Situation.values)
        parser.add_argument("--data-directory", help="Physical backups: the new server's (empty) data directory")
        parser.add_argument("--port", help="Physical backups: the new server's port")
        operation_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        good = Backup.objects.filter(status=Backup.Status.GOOD).select_related("policy__cluster")
        if not options["backup"].isdigit():
            raise CommandError(f"A backup id is a number, not {options['backup']!r}.")
        backup = named(good, options["backup"], "good backup", field="pk")
        policy = backup.policy
        if options["replace"] and backup.engine == "pg_basebackup":
            raise CommandError("A physical backup restores as a new server (--data-directory, --port), not --replace.")
        if options["replace"] and not options["yes"]:
            raise CommandError(f"--replace ends every session on {policy.dbname} and swaps it: add --yes to confirm.")
        if options["replace"] and options["target_database"] not in (None, policy.dbname):
            raise CommandError(f"--replace restores over {policy.dbname}, the policy's database; not another one.")
        actor = cli_actor(options["user"])
        try:
            restore = restore_draft_start(policy=policy, actor=actor)
        except PermissionDenied as exc:
            raise CommandError(str(exc)) from None
        try:
            self._prepare(restore, actor, options)
            operation_start(
                self, lambda: restore_request(restore=restore, actor=actor), f"restore #{restore.pk}", options
            )
        except BaseException:
            Restore.objects.filter(pk=restore.pk, status=Restore.Status.DRAFT).delete()  # never queued: no trace
            raise
        restore.refresh_from_db()
        if restore.status == Restore.Status.VERIFIED:
            self.stdout.write(
                f"Verified: {restore.target_database} · RTO {restore.rto_seconds or 0:.1f} s · restore #{restore.pk}"
            )

    def _prepare(self, restore: Restore, actor: Any, options: dict[str, Any]) -> None:
        """Steps 1–4 of the wizard from the options; the pre-flight printed; CommandError when refused."""
        policy = restore.policy
        try:
            errors = restore_backup_set(restore=restore, actor=actor, backup_id=options["backup"])
            errors += restore_situation_set(restore=restore, actor=actor, situation=options["situation"])
            errors += restore_target_set(
                restore=restore,
                actor=actor,
                target=Restore.Target.REPLACE if options["replace"] else Restore.Target.NEW_DATABASE,
                database=options["target_database"] or "",
                confirm=policy.dbname if options["replace"] else "",
                data_directory=options["data_directory"] or "",
                port=options["port"] or "",
            )
            if errors:
                raise CommandError(" ".join(errors))
            findings = restore_preflight_run(restore=restore, actor=actor)
        except (OperationError, PermissionDenied) as exc:
            raise CommandError(str(exc)) from None
        for finding in findings:
            self.stdout.write(f"{MARKS[finding.level]} {finding.title} {finding.detail}".rstrip())
        if refused := blockers(findings):
            raise CommandError("Refused by the pre-flight: " + " ".join(f.title for f in refused))
