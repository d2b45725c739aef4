"""`manage.py restart_service SERVICE [--user NAME] [--wait]`."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from hadr_portal.core.cli import cli_actor, named, operation_arguments, operation_start
from hadr_portal.status.models import Service
from hadr_portal.status.restart import restart_request


class Command(BaseCommand):
    help = (
        "Restart a service through its restart controller, then wait until its checks are green again"
        " (an operation on the ops queue)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("service", help="Service name, e.g. onboarding-app")
        operation_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        service = named(Service.objects.all(), options["service"], "service")
        operation = operation_start(
            self,
            lambda: restart_request(service=service, actor=cli_actor(options["user"])),
            f"restart of {service.name}",
            options,
        )
        result = operation.result
        if options["wait"] and result.get("seconds_until_green") is not None:
            self.stdout.write(
                f"{service.name} is green again {result['seconds_until_green']} s after the {result['controller']}"
                f" controller returned (it took {result['controller_seconds']} s)."
            )
