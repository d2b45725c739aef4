"""`manage.py check_services --once`: run every enabled check now and print the results."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from hadr_portal.status import engine
from hadr_portal.status.models import Check


class Command(BaseCommand):
    help = "Run every enabled health check now and print the results (--once), or keep running them when due."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="Run every enabled check once, print, exit")
        parser.add_argument("--service", help="Only this service's checks")

    def handle(self, *args: Any, **options: Any) -> None:
        checks = Check.objects.filter(enabled=True)
        if options["service"]:
            checks = checks.filter(service__name=options["service"])
        if options["once"]:
            ids = list(checks.values_list("id", flat=True))
            summary = engine.checks_run(ids)
            self._print(ids)
            self.stdout.write(f"{summary.checked} checks in {summary.seconds:.1f} s")
            if Check.objects.filter(pk__in=ids, last_outcome="down").exists():
                raise SystemExit(1)  # scripts can tell that something is down
            return
        self.stdout.write(f"Running due checks every {settings.CHECK_TICK_SECONDS} s (Ctrl-C stops)…")
        while True:
            due = engine.checks_claim_due()
            if due:
                engine.checks_run(due)
                self._print(due)
            time.sleep(settings.CHECK_TICK_SECONDS)

    def _print(self, ids: list[int]) -> None:
        for check in (
            Check.objects.filter(pk__in=ids)
            .select_related("service")
            .order_by("service__tier", "service__name", "name")
        ):
            latency = f"{check.last_latency_ms:8.1f} ms" if check.last_latency_ms is not None else "        —  "
            self.stdout.write(
                f"{check.service.name + '/' + check.name:36} {check.last_outcome or '—':9} {latency}  {check.last_message}"
            )
