"""`manage.py catalog export FILE [--with-tokens]` and `manage.py catalog import FILE [--prune] [--dry-run] [--user NAME]`.

FILE `-` is stdout (export) or stdin (import).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError, CommandParser

from hadr_portal.core.catalog import (
    CatalogError,
    ImportReport,
    catalog_dump_toml,
    catalog_export,
    catalog_export_summary,
    catalog_import,
    catalog_load_toml,
)
from hadr_portal.core.cli import cli_actor

STDIO = "-"


class Command(BaseCommand):
    help = (
        "Export the catalog (clusters, storage targets, backup policies, services with checks, alert channels) "
        "to TOML, or import such a file."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        export = sub.add_parser("export", help="Write the catalog as TOML")
        export.add_argument("file", help="Where to write it; - for stdout")
        export.add_argument(
            "--with-tokens", action="store_true", help="Include push-check tokens (URL keys): the file becomes a secret"
        )
        load = sub.add_parser("import", help="Make the catalog match a TOML file (upsert by name, all or nothing)")
        load.add_argument("file", help="The file to read; - for stdin")
        load.add_argument("--prune", action="store_true", help="Also delete what the file does not have")
        load.add_argument("--dry-run", action="store_true", help="Validate and report, change nothing")
        load.add_argument("--user", help="Act as this account (its roles apply); default: the portal itself")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "export":
            self._export(options["file"], with_tokens=options["with_tokens"])
        else:
            self._import(options["file"], prune=options["prune"], dry_run=options["dry_run"], user=options["user"])

    def _export(self, file: str, *, with_tokens: bool) -> None:
        data = catalog_export(include_tokens=with_tokens)
        text = catalog_dump_toml(data)
        if file == STDIO:
            self.stdout.write(text, ending="")
            return
        try:
            Path(file).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"Cannot write {file}: {exc.strerror or exc}.") from None
        self.stdout.write(f"Catalog exported to {file}: {catalog_export_summary(data)}.")
        if with_tokens:
            self.stderr.write(f"{file} contains push-check tokens: keep it private.")

    def _import(self, file: str, *, prune: bool, dry_run: bool, user: str | None) -> None:
        actor = cli_actor(user)
        try:
            report = catalog_import(catalog_load_toml(self._read(file)), actor=actor, prune=prune, dry_run=dry_run)
        except PermissionDenied as exc:
            raise CommandError(str(exc)) from None
        except CatalogError as exc:
            count = len(exc.problems)
            raise CommandError(
                f"{file}: {count} problem{'s' if count != 1 else ''}, nothing was changed:\n{exc}"
            ) from None
        self._report(report)

    def _read(self, file: str) -> str:
        if file == STDIO:
            return sys.stdin.read()
        try:
            return Path(file).read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc.strerror or exc}.") from None
        except UnicodeDecodeError as exc:
            raise CommandError(f"Cannot read {file}: not UTF-8 text ({exc.reason} at byte {exc.start}).") from None

    def _report(self, report: ImportReport) -> None:
        heading = "Dry run (nothing was changed)" if report.dry_run else "Catalog imported"
        self.stdout.write(f"{heading}: {report.summary()}.")
        for outcome in ("created", "updated", "deleted", "unchanged"):
            for label in getattr(report, outcome):
                self.stdout.write(f"  {outcome:9} {label}")
