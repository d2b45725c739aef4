"""`manage.py collect_funnel [NAME ...]`: run funnel queries once, now, and say what each did."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from hadr_portal.metrics.funnels import FunnelUnavailable, funnel_collect
from hadr_portal.metrics.models import Funnel


class Command(BaseCommand):
    help = "Run the funnels' queries on their replicas now (all enabled query funnels, or those named)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="*", metavar="NAME")

    def handle(self, *args: Any, names: list[str], **options: Any) -> None:
        funnels = Funnel.objects.filter(source=Funnel.Source.QUERY)
        funnels = funnels.filter(name__in=names) if names else funnels.filter(enabled=True)
        found = list(funnels.order_by("name"))
        missing = sorted(set(names) - {f.name for f in found})
        if missing:
            raise CommandError(f"No query funnel named {', '.join(missing)}.")
        failed = 0
        for funnel in found:
            try:
                done = funnel_collect(funnel=funnel)
            except FunnelUnavailable as exc:
                failed += 1
                self.stderr.write(f"{funnel.name}: not collected: {exc}")
            else:
                self.stdout.write(
                    f"{funnel.name}: {done.hours} hourly counts, {done.days} days since {done.since:%Y-%m-%d %H:%M %Z}"
                )
        if failed:
            raise CommandError(f"{failed} of {len(found)} funnel(s) not collected.")
