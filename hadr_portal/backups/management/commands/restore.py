"""`manage.py restore BACKUP_ID --destination-database NAME [--replace --yes] [--wait]`.

`--target-database`, the option's former name, is still accepted: scripts written for it keep working.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import CommandError, CommandParser

from hadr_portal.backups.models import Backup, Restore
from hadr_portal.backups.wizard import (
    restore_backup_set,
    restore_destination_set,
    restore_draft_start,
    restore_preflight_run,
    restore_request,
    restore_situation_set,
)
from hadr_portal.core.cli import OperationCommand, named
from hadr_portal.core.findings import blockers
from hadr_portal.core.models import Operation

MARKS = {"ok": "✔", "warning": "⚠", "blocker": "✖"}


class Command(OperationCommand[Backup]):
    help = (
        "Restore a backup (an operation on the ops queue): into a new database, or with --replace over the "
        "production database (safety backup first, swapped in only once verified, the old one kept renamed). "
        "A physical backup is restored as a new server (--data-directory, --port). The pre-flight is printed first."
    )

    def arguments(self, parser: CommandParser) -> None:
        parser.add_argument("backup", help="Backup id (see `manage.py backups`)")
        parser.add_argument(
            "--destination-database",
            "--target-database",
            dest="destination_database",
            help="The new database's name (with --replace: the production one)",
        )
        parser.add_argument("--replace", action="store_true", help="Replace the production database")
        parser.add_argument("--yes", action="store_true", help="Confirm --replace (it ends the database's sessions)")
        parser.add_argument("--situation", default="corruption", choices=Restore.Situation.values)
        parser.add_argument("--data-directory", help="Physical backups: the new server's (empty) data directory")
        parser.add_argument("--port", help="Physical backups: the new server's port")

    def subject(self, options: dict[str, Any]) -> Backup:
        good = Backup.objects.filter(status=Backup.Status.GOOD).select_related("policy__cluster")
        if not options["backup"].isdigit():
            raise CommandError(f"A backup id is a number, not {options['backup']!r}.")
        backup = named(good, options["backup"], "good backup", field="pk")
        policy = backup.policy
        if options["replace"] and backup.engine == "pg_basebackup":
            raise CommandError("A physical backup restores as a new server (--data-directory, --port), not --replace.")
        if options["replace"] and not options["yes"]:
            raise CommandError(f"--replace ends every session on {policy.dbname} and swaps it: add --yes to confirm.")
        if options["replace"] and options["destination_database"] not in (None, policy.dbname):
            raise CommandError(f"--replace restores over {policy.dbname}, the policy's database; not another one.")
        return backup

    def request(self, subject: Backup, actor: User | None, options: dict[str, Any]) -> Operation:
        """The wizard's steps from the options, the pre-flight printed, then the restore queued. A restore that
        was refused before it was queued leaves no trace."""
        restore = restore_draft_start(policy=subject.policy, actor=actor)
        try:
            self._prepare(restore, actor, options)
            return restore_request(restore=restore, actor=actor)
        except BaseException:
            Restore.objects.filter(pk=restore.pk, status=Restore.Status.DRAFT).delete()
            raise

    def what(self, subject: Backup, operation: Operation) -> str:
        return f"restore #{operation.parameters['restore']}"

    def finished(self, subject: Backup, operation: Operation, options: dict[str, Any]) -> None:
        restore = Restore.objects.get(operation=operation)
        if restore.status == Restore.Status.VERIFIED:
            self.stdout.write(
                f"Verified: {restore.destination_database} · RTO {restore.rto_seconds or 0:.1f} s · restore #{restore.pk}"
            )

    def _prepare(self, restore: Restore, actor: User | None, options: dict[str, Any]) -> None:
        """Steps 1–4 of the wizard from the options, and the pre-flight printed; raises when either refuses."""
        policy = restore.policy
        errors = restore_backup_set(restore=restore, actor=actor, backup_id=options["backup"])
        errors += restore_situation_set(restore=restore, actor=actor, situation=options["situation"])
        errors += restore_destination_set(
            restore=restore,
            actor=actor,
            destination=Restore.Destination.REPLACE if options["replace"] else Restore.Destination.NEW_DATABASE,
            database=options["destination_database"] or "",
            confirm=policy.dbname if options["replace"] else "",
            data_directory=options["data_directory"] or "",
            port=options["port"] or "",
        )
        if errors:
            raise CommandError(" ".join(errors))
        findings = restore_preflight_run(restore=restore, actor=actor)
        for finding in findings:
            self.stdout.write(f"{MARKS[finding.level]} {finding.title} {finding.detail}".rstrip())
        if refused := blockers(findings):
            raise CommandError("Refused by the pre-flight: " + " ".join(f.title for f in refused))
