"""What management commands share: who is acting, finding rows by name, and the shape of a command that
queues an operation (`OperationCommand`)."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Model, QuerySet

from .models import Operation
from .operation_kinds import OperationError

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

M = TypeVar("M", bound=Model)
S = TypeVar("S")


def cli_actor(username: str | None) -> User | None:
    """The account a command acts as (its permissions apply), or None for the portal itself."""
    if not username:
        return None
    try:
        return get_user_model().objects.get(username=username, is_active=True)
    except get_user_model().DoesNotExist:
        raise CommandError(f"No active account named {username!r}.") from None


def operation_wait(operation: Operation, *, timeout: float, stream: SupportsWrite[str] = sys.stdout) -> Operation:
    """Print the operation's log as it grows until it ends; CommandError on timeout."""
    deadline = time.monotonic() + timeout
    shown = 0
    while True:
        operation.refresh_from_db()
        lines = list(operation.log_lines.all()[shown:])
        for line in lines:
            stream.write(f"{line.at:%H:%M:%S} {line.level:7} {line.message}\n")
        shown += len(lines)
        if not operation.is_active:
            return operation
        if time.monotonic() > deadline:
            raise CommandError(f"Operation #{operation.pk} still {operation.status} after {timeout:.0f} s.")
        time.sleep(0.5)


def named(queryset: QuerySet[M], name: str, what: str, field: str = "name") -> M:
    """The row called `name`, or a CommandError listing the names there are."""
    try:
        return queryset.get(**{field: name})
    except ObjectDoesNotExist:
        known = ", ".join(str(value) for value in queryset.values_list(field, flat=True)[:20]) or "none"
        raise CommandError(f"No {what} named {name!r} (known: {known}).") from None


class OperationCommand(BaseCommand, Generic[S]):
    """A command that queues one operation through the same service, permissions and audit as the web page.

    A command declares its own `arguments()`, the `subject()` it acts on (found from the options), how it
    `request()`s the operation and `what()` to call it; `finished()` says more once it is queued, or with --wait
    once it succeeded. Here, the same for every such command: --user (whose roles apply), --wait (the log as it
    grows, a CommandError unless it succeeds) and --timeout, refusals as a CommandError, and the
    "Operation #N queued: ..." line."""

    wait_help = "Show the log until the operation ends"
    timeout = 900.0

    def arguments(self, parser: CommandParser) -> None:
        """The command's own arguments."""

    def subject(self, options: dict[str, Any]) -> S | None:
        """What the command acts on (a CommandError when there is no such thing); None: nothing to queue, and
        the command has said why."""
        raise NotImplementedError

    def request(self, subject: S, actor: User | None, options: dict[str, Any]) -> Operation | None:
        """Queue the operation as `actor` (the service's `*_request`); None: nothing queued, and it said why."""
        raise NotImplementedError

    def what(self, subject: S, operation: Operation) -> str:
        """The operation in the "queued" line, e.g. "restart of onboarding-app"."""
        raise NotImplementedError

    def failure(self, operation: Operation) -> str:
        """The error when --wait saw the operation end otherwise than succeeded."""
        return f"Operation #{operation.pk} {operation.status}: {operation.error}"

    def finished(self, subject: S, operation: Operation, options: dict[str, Any]) -> None:
        """More to say once it is queued (with --wait: once it succeeded)."""

    def add_arguments(self, parser: CommandParser) -> None:
        self.arguments(parser)
        parser.add_argument("--user", help="Act as this account (its roles apply); default: the portal itself")
        parser.add_argument("--wait", action="store_true", help=self.wait_help)
        parser.add_argument("--timeout", type=float, default=self.timeout, help="Seconds to wait with --wait")

    def handle(self, *args: Any, **options: Any) -> None:
        subject = self.subject(options)
        if subject is None:
            return
        try:
            operation = self.request(subject, cli_actor(options["user"]), options)
        except (OperationError, PermissionDenied) as exc:
            raise CommandError(str(exc)) from None
        if operation is None:
            return
        self.stdout.write(f"Operation #{operation.pk} queued: {self.what(subject, operation)}.")
        if options["wait"]:
            operation = operation_wait(operation, timeout=options["timeout"], stream=self.stdout)
            if operation.status != Operation.Status.SUCCEEDED:
                raise CommandError(self.failure(operation))
        self.finished(subject, operation, options)
