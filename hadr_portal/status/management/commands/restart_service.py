"""`manage.py restart_service SERVICE [--user NAME] [--wait]`."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import CommandParser

from hadr_portal.core.cli import OperationCommand, named
from hadr_portal.core.models import Operation
from hadr_portal.status.models import Service
from hadr_portal.status.restart import restart_request


class Command(OperationCommand[Service]):
    help = (
        "Restart a service through its restart controller, then wait until its checks are green again"
        " (an operation on the ops queue)."
    )

    def arguments(self, parser: CommandParser) -> None:
        parser.add_argument("service", help="Service name, e.g. onboarding-app")

    def subject(self, options: dict[str, Any]) -> Service:
        return named(Service.objects.all(), options["service"], "service")

    def request(self, subject: Service, actor: User | None, options: dict[str, Any]) -> Operation:
        return restart_request(service=subject, actor=actor)

    def what(self, subject: Service, operation: Operation) -> str:
        return f"restart of {subject.name}"

    def finished(self, subject: Service, operation: Operation, options: dict[str, Any]) -> None:
        result = operation.result
        if options["wait"] and result.get("seconds_until_green") is not None:
            self.stdout.write(
                f"{subject.name} is green again {result['seconds_until_green']} s after the {result['controller']}"
                f" controller returned (it took {result['controller_seconds']} s)."
            )
